//! Abuse resistance, end to end: response rate limiting under a flood, TCP connection limits,
//! slow-loris clients, API body caps and the API over TLS.
//!
//! Owns: behaviour under hostile clients as seen from outside. Must never: send traffic
//! anywhere but loopback (sources 127.x.y.z are all loopback), or wait without a deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::harness::{
    ADMIN_TOKEN, Meridian, NET_TIMEOUT, Query, a_records, admin_args, ask_tcp, frame, read_frame,
    tcp_from, udp_from,
};

const WWW: &str = "www.example.test.";

/// Load tests (floods, thousands of connections, the chaos test) take this lock so that they
/// run one at a time: on a small CI machine, two of them at once starve each other's servers
/// of CPU and the kernel drops datagrams no rate limit is responsible for.
pub static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`HEAVY`], whether or not another load test panicked while holding it.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn www_addrs() -> Vec<Ipv4Addr> {
    vec![Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)]
}

/// One query over an open TCP connection; the decoded reply, or None if the server closed.
fn tcp_query(s: &mut TcpStream, id: u16) -> Option<Message> {
    let msg = ask_tcp(s, &Query::new(WWW, RecordType::A).id(id).to_bytes())?;
    assert_eq!(msg.metadata.id, id);
    Some(msg)
}

fn assert_full_answer(msg: &Message, what: &str) {
    assert!(!msg.metadata.truncation, "{what}: truncated");
    assert_eq!(a_records(msg), www_addrs(), "{what}");
}

// ---- response rate limiting ----

#[derive(Default, Debug)]
struct FloodTally {
    full: u64,
    truncated: u64,
    other: u64,
}

#[test]
fn rrl_limits_a_flooding_prefix_while_another_prefix_gets_every_answer() {
    const RATE: u64 = 20;
    let _heavy = heavy();
    let ns = Meridian::serve_with(
        "core/basic",
        &["--rrl-rate", &RATE.to_string(), "--rrl-slip", "2"],
    );
    let flood = Arc::new(udp_from(Ipv4Addr::new(127, 0, 0, 2), ns.dns));
    flood
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (flood, done) = (Arc::clone(&flood), Arc::clone(&done));
        thread::spawn(move || {
            let mut tally = FloodTally::default();
            let mut buf = vec![0u8; 65_535];
            let mut quiet_since = None::<Instant>;
            loop {
                match flood.recv(&mut buf) {
                    Ok(n) => {
                        quiet_since = None;
                        let msg = Message::from_vec(&buf[..n]).unwrap();
                        if msg.metadata.truncation && msg.answers.is_empty() {
                            tally.truncated += 1;
                        } else if a_records(&msg) == www_addrs() {
                            tally.full += 1;
                        } else {
                            tally.other += 1;
                        }
                    }
                    Err(_) if done.load(Ordering::SeqCst) => {
                        // Stop after a second with nothing more arriving.
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(1) {
                            return tally;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };

    let polite = udp_from(Ipv4Addr::new(127, 1, 0, 1), ns.dns);
    polite
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    let (mut flood_sent, mut polite_sent, mut polite_full, mut polite_retries) =
        (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut next_polite = started;
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..20 {
            let q = Query::new(WWW, RecordType::A)
                .id(flood_sent as u16)
                .to_bytes();
            flood.send(&q).unwrap();
            flood_sent += 1;
        }
        if Instant::now() >= next_polite {
            // 10 queries per second from another /24: well under the rate, so every one
            // must be answered in full while the flood goes on.
            next_polite += Duration::from_millis(100);
            let id = 50_000 + polite_sent as u16;
            polite_sent += 1;
            // Like a resolver, retry a query that got no answer at all: under CPU pressure
            // the kernel may drop a datagram before the server sees it. A rate-limited
            // answer would be a truncated reply, not silence, so this hides no RRL error.
            let mut attempts = 0;
            let n = loop {
                attempts += 1;
                polite
                    .send(&Query::new(WWW, RecordType::A).id(id).to_bytes())
                    .unwrap();
                match polite.recv(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if attempts < 3 => {
                        polite_retries += 1;
                        println!("polite query {id}: no answer ({e}), retrying");
                    }
                    Err(e) => panic!("the polite prefix got no answer in 3 tries: {e}"),
                }
            };
            let msg = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(msg.metadata.id, id);
            assert_full_answer(&msg, "polite prefix during the flood");
            polite_full += 1;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let flood_secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let tally = reader.join().unwrap();

    let limited = ns.metric("meridian_rrl_limited_total") as u64;
    let slipped = ns.metric("meridian_rrl_slipped_total") as u64;
    let udp_handled = ns.metric("meridian_queries_total{transport=\"udp\"}") as u64;
    // Polite queries the server handled: each sent once, plus any retry that got through.
    let flood_handled = udp_handled - polite_sent;
    let flood_handled_min = flood_handled.saturating_sub(polite_retries);
    // A bucket starts with four seconds' worth (Knot's capacity) and gains RATE at each
    // second of the server's clock: a flood of ~2 s crosses at most ceil(2) + 1 boundaries.
    let refills = flood_secs.ceil() as u64 + 1;
    let budget = RATE * 4 + RATE * refills;
    println!(
        "rrl flood: sent {flood_sent} in {flood_secs:.2}s, server handled {flood_handled}; \
         received {} full, {} truncated, {} other; limited {limited}, slipped {slipped}; \
         polite prefix {polite_full}/{polite_sent} answered in full ({polite_retries} retries)",
        tally.full, tally.truncated, tally.other
    );
    assert_eq!(polite_full, polite_sent);
    assert!(polite_sent >= 15, "too few polite queries: {polite_sent}");
    assert_eq!(tally.other, 0, "unexpected replies to the flood");
    assert!(
        flood_handled * 100 >= flood_sent * 80,
        "the server saw only {flood_handled} of {flood_sent} flood queries"
    );
    assert!(
        tally.full >= RATE,
        "not even one second's budget was answered"
    );
    assert!(
        tally.full <= budget,
        "{} full answers exceed a burst of {} plus {RATE}/s over {refills} refills",
        tally.full,
        RATE * 4
    );
    // Every flood response passed or was limited, and nothing else was limited.
    assert!(
        (flood_handled_min..=flood_handled).contains(&(tally.full + limited)),
        "{} full + {limited} limited != {flood_handled} handled",
        tally.full
    );
    assert_eq!(tally.truncated, slipped, "every slip arrived as TC=1");
    // Slip 2: every second limited response of the bucket went out truncated.
    assert!(slipped * 2 <= limited && limited - slipped * 2 <= 1);
}

#[test]
fn rrl_never_limits_tcp_and_is_off_by_default() {
    let ns = Meridian::serve_with("core/basic", &["--rrl-rate", "1", "--rrl-slip", "0"]);
    let udp = udp_from(Ipv4Addr::LOCALHOST, ns.dns);
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    for id in 0..10u16 {
        udp.send(&Query::new(WWW, RecordType::A).id(id).to_bytes())
            .unwrap();
    }
    let mut udp_answers = 0;
    while udp.recv(&mut buf).is_ok() {
        udp_answers += 1;
    }
    // A 1/s bucket starts with four seconds' worth: four answers, or five if the burst
    // straddled a second boundary.
    assert!((4..=5).contains(&udp_answers), "udp answers: {udp_answers}");
    let mut s = ns.tcp_connect();
    for id in 0..50u16 {
        let msg = tcp_query(&mut s, id).expect("tcp query unanswered");
        assert_full_answer(&msg, "tcp under rrl");
    }
    assert_eq!(
        ns.metric("meridian_rrl_limited_total") as u64,
        10 - udp_answers
    );

    // Without --rrl-rate nothing is limited.
    let open = Meridian::serve("core/basic");
    let udp = udp_from(Ipv4Addr::LOCALHOST, open.dns);
    udp.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    for id in 0..200u16 {
        udp.send(&Query::new(WWW, RecordType::A).id(id).to_bytes())
            .unwrap();
        let n = udp.recv(&mut buf).expect("answer without rrl");
        assert_full_answer(&Message::from_vec(&buf[..n]).unwrap(), "no rrl");
    }
    assert_eq!(open.metric("meridian_rrl_limited_total"), 0.0);
}

// ---- TCP limits ----

#[test]
fn tcp_per_client_cap_closes_extra_connections_of_that_client_only() {
    let ns = Meridian::serve_with("core/basic", &["--max-tcp-connections-per-client", "5"]);
    let local = Ipv4Addr::new(127, 0, 0, 1);
    let mut conns: Vec<TcpStream> = (0..8).map(|_| tcp_from(local, ns.dns)).collect();
    let answered: Vec<bool> = conns
        .iter_mut()
        .enumerate()
        .map(|(i, s)| tcp_query(s, i as u16).is_some())
        .collect();
    assert_eq!(
        answered,
        [true, true, true, true, true, false, false, false]
    );
    assert_eq!(
        ns.metric("meridian_tcp_connections_refused_total{reason=\"per_client\"}"),
        3.0
    );
    // Another address is not affected.
    let mut other = tcp_from(Ipv4Addr::new(127, 0, 0, 9), ns.dns);
    assert_full_answer(&tcp_query(&mut other, 99).unwrap(), "other client");
    // Closing one frees its slot (the server notices the close asynchronously).
    drop(conns.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = tcp_from(local, ns.dns);
        if tcp_query(&mut s, 7).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tcp_query_cap_and_session_timeout_close_busy_connections() {
    let ns = Meridian::serve_with(
        "core/basic",
        &["--max-tcp-queries", "3", "--tcp-session-timeout", "2"],
    );
    // Pipelined: three answers, then the connection is closed.
    let mut s = ns.tcp_connect();
    let mut batch = Vec::new();
    for id in 1..=5u16 {
        batch.extend(frame(&Query::new(WWW, RecordType::A).id(id).to_bytes()));
    }
    s.write_all(&batch).unwrap();
    let mut ids = Vec::new();
    while let Some(raw) = read_frame(&mut s) {
        ids.push(Message::from_vec(&raw).unwrap().metadata.id);
    }
    assert_eq!(ids, [1, 2, 3]);

    // Busy, never idle for the 10 s idle timeout, but open past the 2 s session timeout.
    let mut s = ns.tcp_connect();
    let opened = Instant::now();
    assert!(tcp_query(&mut s, 1).is_some());
    thread::sleep(Duration::from_millis(1200));
    assert!(tcp_query(&mut s, 2).is_some());
    thread::sleep(Duration::from_millis(1200));
    assert!(
        tcp_query(&mut s, 3).is_none(),
        "still open {:?} after accept with a 2 s session timeout",
        opened.elapsed()
    );
}

/// Opens `n` connections spread over `sources` addresses `127.0.<third>.1..`, each sending
/// one byte of a length prefix and then nothing (a slow-loris client).
fn slow_loris(server: SocketAddr, third: u8, sources: u8, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let src = Ipv4Addr::new(127, 0, third, 1 + (i % usize::from(sources)) as u8);
            let mut s = tcp_from(src, server);
            s.write_all(&[0]).unwrap();
            s
        })
        .collect()
}

fn assert_serving(ns: &Meridian, what: &str) {
    for i in 0..5u16 {
        assert_full_answer(&ns.query_udp(WWW, RecordType::A), &format!("{what}: udp"));
        let mut s = tcp_from(Ipv4Addr::new(127, 0, 0, 1), ns.dns);
        let msg = tcp_query(&mut s, i).unwrap_or_else(|| panic!("{what}: new tcp client refused"));
        assert_full_answer(&msg, &format!("{what}: new tcp client"));
    }
}

#[test]
fn slow_loris_connections_do_not_lock_out_udp_or_new_tcp_clients() {
    let _heavy = heavy();
    let nofile = crate::harness::system::raise_nofile(8192);
    assert!(
        nofile >= 4500,
        "RLIMIT_NOFILE {nofile} is too low for 2,000 client and 1,024 server sockets"
    );
    // Default limits (1,024 connections, 64 per client); a long idle timeout, so that the
    // idle reaper is not what saves the server here.
    let ns = Meridian::serve_with("core/basic", &["--tcp-idle-timeout", "120"]);
    let started = Instant::now();

    // 1,000 silent connections from 50 addresses (20 each, under the per-client cap).
    let first = slow_loris(ns.dns, 3, 50, 1000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.metric("meridian_tcp_connections_total") < 1000.0 {
        assert!(Instant::now() < deadline, "server did not accept 1,000");
        thread::sleep(Duration::from_millis(50));
    }
    assert_serving(&ns, "1,000 idle connections");

    // A busy client, opened before the second wave, must survive it.
    let mut busy = ns.tcp_connect();
    // Let the first wave be idle past the eviction threshold (1 s) while `busy` is not.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut id = 0u16;
    while Instant::now() < until {
        assert_full_answer(&tcp_query(&mut busy, id).unwrap(), "busy client");
        id += 1;
        thread::sleep(Duration::from_millis(100));
    }

    // 1,000 more: past the total cap, so the longest-idle ones are evicted to make room.
    let second = slow_loris(ns.dns, 4, 50, 1000);
    assert_serving(&ns, "2,000 slow-loris connections");
    assert_full_answer(
        &tcp_query(&mut busy, id).expect("busy client evicted"),
        "busy client after the second wave",
    );
    let evicted = ns.metric("meridian_tcp_connections_evicted_total");
    let accepted = ns.metric("meridian_tcp_connections_total");
    // 2,000 idle and 1 busy connection are still open on the client side; the probes were
    // closed. At most 1,024 may be open on the server at once.
    assert!(
        evicted >= 2001.0 - 1024.0,
        "evicted {evicted} of {accepted}: more than 1,024 open"
    );
    // The evicted connections really were closed: reading gives EOF (or a reset), not a
    // timeout.
    let mut closed = 0;
    for mut s in first.into_iter().take(100) {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let r = s.read(&mut [0u8; 4]);
        if matches!(r, Ok(0)) || r.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset) {
            closed += 1;
        }
    }
    println!(
        "slow loris: accepted {accepted}, evicted {evicted}, first 100 of wave one closed: \
         {closed}, took {:?}",
        started.elapsed()
    );
    assert_eq!(closed, 100, "the oldest idle connections were not closed");
    drop(second);
}

// ---- HTTP API ----

/// Sends a request with a body of `len` bytes (written as far as the server reads it) and
/// returns the status code.
/// POSTs `len` bytes to `path` with `auth` as the bearer token (none when empty).
fn post_sized(api: SocketAddr, path: &str, auth: &str, len: usize) -> u16 {
    let mut s = TcpStream::connect_timeout(&api, NET_TIMEOUT).unwrap();
    s.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(NET_TIMEOUT)).unwrap();
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {auth}\r\n")
    };
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {len}\r\n\r\n"
    )
    .unwrap();
    // The server may answer 413 and close before the whole body is sent.
    let chunk = vec![b' '; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        if s.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[test]
fn api_bodies_are_size_capped() {
    let admin = admin_args();
    let ns = Meridian::serve_with("core/basic", &[&admin[0], &admin[1]]);
    // Report ingest: 4 MiB cap (a prober of 10,000 endpoints sends 1-2 MB), checked before
    // any signature or JSON work; under it, an unsigned body is refused as such.
    assert_eq!(
        post_sized(ns.api, "/v1/reports", "", 4 * 1024 * 1024 + 2),
        413
    );
    assert_eq!(post_sized(ns.api, "/v1/reports", "", 2 * 1024 * 1024), 401);
    // Other JSON bodies: axum's default 2 MB cap.
    assert_eq!(
        post_sized(ns.api, "/v1/overrides", ADMIN_TOKEN, 3 * 1024 * 1024),
        413
    );
    // Without the token the body is not even read.
    assert_eq!(
        post_sized(ns.api, "/v1/overrides", "", 3 * 1024 * 1024),
        401
    );
    assert_eq!(ns.metric("meridian_reports_accepted_total"), 0.0);
}

#[test]
fn api_serves_tls_with_the_given_certificate_and_refuses_plain_http() {
    use rustls::pki_types::{CertificateDer, ServerName};
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("api.crt");
    let key_path = dir.path().join("api.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let ns = Meridian::serve_with(
        "core/basic",
        &[
            "--api-tls-cert",
            cert_path.to_str().unwrap(),
            "--api-tls-key",
            key_path.to_str().unwrap(),
        ],
    );

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = TcpStream::connect_timeout(&ns.api, NET_TIMEOUT).unwrap();
    sock.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    // rustls reports a peer that closes without close_notify as an error; the body is read.
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "over TLS: {text}");
    assert!(text.contains("\"status\":\"ok\""), "{text}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect_timeout(&ns.api, NET_TIMEOUT).unwrap();
    plain.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    write!(plain, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "plain HTTP was served on the TLS port"
    );
}

#[test]
fn api_tls_with_a_bad_key_stops_start_up_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("api.crt");
    let key_path = dir.path().join("api.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, "not a key\n").unwrap();
    let out = crate::harness::run_serve(
        &crate::harness::fixture("core/basic"),
        &[
            "--api-tls-cert",
            cert_path.to_str().unwrap(),
            "--api-tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("api.key"), "{}", out.stderr);
}
