//! DNS over TCP under load and misbehaving clients: long pipelined streams on one busy
//! connection, a client that never reads its answers, clients that close with answers
//! pending. (Connection caps and slow-loris clients are in `robust`.)
//!
//! Owns: per-connection TCP behaviour as a client sees it. Must never: send traffic anywhere
//! but loopback, or wait without a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::harness::{Meridian, Query, a_records, ask_tcp, frame, read_frame, tcp_from};

const BASIC: &str = "core/basic";
const WWW: &str = "www.example.test.";
/// 100 A records: an answer of about 1,640 bytes for a query of about 35, so a client that
/// does not read fills its receive window after a few pipelined queries.
const HUGE: &str = "huge.example.test.";

/// `n` framed queries for `name`, ids 0..n, in one buffer.
fn pipelined(name: &str, n: u16) -> Vec<u8> {
    (0..n)
        .flat_map(|id| frame(&Query::new(name, RecordType::A).id(id).to_bytes()))
        .collect()
}

fn tcp_answers(ns: &Meridian) -> f64 {
    ns.metric(r#"meridian_queries_total{transport="tcp"}"#)
}

/// Asks `www` over a new TCP connection and over UDP; panics unless both answer correctly
/// within `within`.
fn assert_prompt(ns: &Meridian, within: Duration, what: &str) {
    let started = Instant::now();
    let mut s = tcp_from(Ipv4Addr::LOCALHOST, ns.dns);
    s.set_read_timeout(Some(within)).unwrap();
    let msg = ask_tcp(&mut s, &Query::new(WWW, RecordType::A).to_bytes())
        .unwrap_or_else(|| panic!("{what}: no tcp answer within {within:?}"));
    assert_eq!(a_records(&msg).len(), 2, "{what}: tcp");
    assert_eq!(ns.a(WWW).len(), 2, "{what}: udp");
    assert!(
        started.elapsed() < within,
        "{what}: answers took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_busy_connection_is_never_closed_by_default() {
    // 12,000 pipelined queries on one connection: past the old 10,000-query cap, and all
    // answered, in order, on the one connection (NSD and Knot do not cap either).
    let ns = Meridian::serve(BASIC);
    let mut s = ns.tcp_connect();
    const N: u16 = 12_000;
    let queries = pipelined(WWW, N);
    let writer = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || s.write_all(&queries))
    };
    for id in 0..N {
        let raw = read_frame(&mut s).unwrap_or_else(|| panic!("connection closed after {id}"));
        let msg = Message::from_vec(&raw).unwrap();
        assert_eq!(msg.metadata.id, id, "answers in order");
        assert_eq!(a_records(&msg).len(), 2);
    }
    writer.join().unwrap().unwrap();
    // Still open and serving.
    let msg = ask_tcp(&mut s, &Query::new(WWW, RecordType::A).id(7).to_bytes())
        .expect("connection closed after 12,000 queries");
    assert_eq!(msg.metadata.id, 7);
}

#[test]
fn a_client_that_never_reads_blocks_nobody_and_is_closed_when_idle() {
    // Megabytes of answers: one load test at a time (see `robust::heavy`).
    let _heavy = crate::robust::heavy();
    let ns = Meridian::serve_with(BASIC, &["--tcp-idle-timeout", "5"]);
    // 20,000 queries with about 33 MB of answers, pipelined by a client that reads nothing:
    // its receive window fills, the server stops reading it, and its own writes stall.
    const N: u16 = 20_000;
    let mut stuck = ns.tcp_connect();
    let writer = {
        let mut s = stuck.try_clone().unwrap();
        s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        let queries = pipelined(HUGE, N);
        thread::spawn(move || s.write_all(&queries).is_ok())
    };
    // Wait until the server has stopped answering it (the count stands still).
    let stalled_at = Instant::now();
    let mut last = tcp_answers(&ns);
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = tcp_answers(&ns);
        if now == last && now > 0.0 {
            break;
        }
        last = now;
        assert!(
            stalled_at.elapsed() < Duration::from_secs(20),
            "the server never stopped answering a client that does not read"
        );
    }
    assert!(
        last < f64::from(N),
        "all {N} queries answered to a client that reads nothing: no backpressure"
    );
    // Other clients are served promptly meanwhile, over new connections and UDP: well
    // within the 5 s idle timeout that would end the stuck connection.
    let served_from = Instant::now();
    while served_from.elapsed() < Duration::from_millis(1500) {
        assert_prompt(
            &ns,
            Duration::from_millis(1500),
            "while a client does not read",
        );
    }
    // The stuck client has taken nothing for the idle timeout: it is closed. Reading now
    // gives the answers the buffers held, then EOF (or a reset), within a bounded time.
    thread::sleep(
        Duration::from_secs(5).saturating_sub(served_from.elapsed()) + Duration::from_millis(1500),
    );
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    loop {
        match stuck.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("stuck connection still open after {got} bytes: {e}"),
        }
    }
    assert!(
        got < usize::from(N) * 1600,
        "received {got} bytes: every answer"
    );
    writer.join().unwrap();
    assert_prompt(&ns, Duration::from_millis(1500), "after the stuck client");
}

#[test]
fn clients_closing_with_answers_pending_free_their_slots_at_once() {
    // Four slots; four clients pipeline queries with large answers and close at once
    // (unread answers: the kernel resets the connection). Their slots must come free well
    // before the idle timeout, so four new clients at once are all served.
    let ns = Meridian::serve_with(
        BASIC,
        &["--max-tcp-connections", "4", "--tcp-idle-timeout", "30"],
    );
    let queries = pipelined(HUGE, 2_000);
    for _ in 0..4 {
        let mut s = ns.tcp_connect();
        // The server may reset the connection while we still write: that is fine.
        let _ = s.write_all(&queries);
        drop(s);
    }
    let started = Instant::now();
    loop {
        let mut conns: Vec<TcpStream> = (0..4)
            .map(|_| tcp_from(Ipv4Addr::LOCALHOST, ns.dns))
            .collect();
        let mut answered = 0;
        for (i, s) in conns.iter_mut().enumerate() {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let q = Query::new(WWW, RecordType::A).id(i as u16).to_bytes();
            if ask_tcp(s, &q).is_some() {
                answered += 1;
            }
        }
        if answered == 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {answered} of 4 new clients served: closed connections still hold slots"
        );
        drop(conns);
        thread::sleep(Duration::from_millis(100));
    }
    println!("slots free after {:?}", started.elapsed());
}

/// A query sent a byte at a time, and a stream of pipelined queries cut at arbitrary points,
/// are answered like any other (the framing does not depend on how reads fall).
#[test]
fn queries_split_across_reads_are_answered() {
    let ns = Meridian::serve(BASIC);
    let mut s = ns.tcp_connect();
    let q = frame(&Query::new(WWW, RecordType::A).id(42).to_bytes());
    for b in &q {
        s.write_all(std::slice::from_ref(b)).unwrap();
        thread::sleep(Duration::from_millis(5));
    }
    let msg = Message::from_vec(&read_frame(&mut s).expect("answer")).unwrap();
    assert_eq!(msg.metadata.id, 42);

    let stream = pipelined(WWW, 50);
    for chunk in stream.chunks(77) {
        s.write_all(chunk).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    for id in 0..50u16 {
        let raw = read_frame(&mut s).expect("pipelined answer");
        assert_eq!(Message::from_vec(&raw).unwrap().metadata.id, id);
    }
}
