use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn registry(max: usize, per_client: usize) -> Registry {
    Registry::new(&TcpLimits {
        max_connections: max,
        max_connections_per_client: per_client,
        ..TcpLimits::default()
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn per_client_cap_refuses_only_that_client() {
    let r = registry(10, 2);
    let a = r.admit(ip("192.0.2.1")).unwrap();
    r.admit(ip("192.0.2.1")).unwrap();
    assert_eq!(r.admit(ip("192.0.2.1")).err(), Some(TcpRefusal::PerClient));
    assert!(r.admit(ip("192.0.2.2")).is_ok());
    r.release(a.id);
    assert!(r.admit(ip("192.0.2.1")).is_ok());
}

#[test]
fn full_table_evicts_the_longest_idle_connection() {
    let r = registry(3, 10);
    let conns: Vec<_> = (1..=3)
        .map(|i| r.admit(ip(&format!("192.0.2.{i}"))).unwrap())
        .collect();
    // Last activity at 5 s, 1 s and 8 s; at 10 s the one quiet since 1 s goes.
    for (c, last) in conns.iter().zip([5_000, 1_000, 8_000]) {
        c.shared.last_active.store(last, Ordering::Relaxed);
    }
    let newcomer = r.admit_at(ip("198.51.100.1"), 10_000).unwrap();
    assert!(newcomer.evicted);
    assert_eq!(r.open(), (3, 3));
    // The evicted one was told to close, and releasing it later changes nothing.
    let waiter = conns[1].shared.close.notified();
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(1), waiter)
                .await
                .expect("evicted connection was not notified");
        });
    r.release(conns[1].id);
    assert_eq!(r.open(), (3, 3));
    r.release(conns[0].id);
    assert_eq!(r.open(), (2, 2));
}

#[test]
fn of_connections_idle_since_the_same_millisecond_the_oldest_goes() {
    // A client opening many connections quickly leaves several with one `last_active`; the
    // map's order used to pick any of them (dnsedge's cap test saw the second one go).
    for _ in 0..20 {
        let r = registry(100, 8);
        let conns: Vec<_> = (0..8).map(|_| r.admit(ip("192.0.2.1")).unwrap()).collect();
        for c in &conns {
            c.shared.last_active.store(1_000, Ordering::Relaxed);
        }
        assert!(r.admit_at(ip("192.0.2.1"), 10_000).unwrap().evicted);
        assert!(
            !r.lock().conns.contains_key(&conns[0].id),
            "the oldest stays"
        );
        for c in &conns[1..] {
            assert!(r.lock().conns.contains_key(&c.id), "a younger one went");
        }
    }
}

#[test]
fn client_key_is_the_ipv4_address_or_the_ipv6_slash_64() {
    for (addr, key) in [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
        ("2001:db8:1:2::1", "2001:db8:1:2::"),
        ("2001:db8:1:3::1", "2001:db8:1:3::"),
        ("::1", "::"),
    ] {
        assert_eq!(client_key(ip(addr)), ip(key), "{addr}");
    }
}

#[test]
fn one_ipv6_slash_64_shares_one_per_client_cap() {
    let r = registry(100, 2);
    r.admit(ip("2001:db8:0:1::1")).unwrap();
    r.admit(ip("2001:db8:0:1::2")).unwrap();
    assert_eq!(
        r.admit(ip("2001:db8:0:1:ffff::3")).err(),
        Some(TcpRefusal::PerClient)
    );
    assert!(r.admit(ip("2001:db8:0:2::1")).is_ok());
    // A mapped IPv4 address is that IPv4 client.
    r.admit(ip("192.0.2.1")).unwrap();
    r.admit(ip("::ffff:192.0.2.1")).unwrap();
    assert_eq!(r.admit(ip("192.0.2.1")).err(), Some(TcpRefusal::PerClient));
}

#[test]
fn a_client_at_its_cap_loses_its_own_longest_idle_connection() {
    let r = registry(100, 3);
    let mine: Vec<_> = (0..3).map(|_| r.admit(ip("192.0.2.1")).unwrap()).collect();
    let other = r.admit(ip("192.0.2.2")).unwrap();
    // Idle since 4 s, 2 s and 6 s; the other client's has been idle longest of all.
    for (c, last) in mine.iter().zip([4_000, 2_000, 6_000]) {
        c.shared.last_active.store(last, Ordering::Relaxed);
    }
    other.shared.last_active.store(0, Ordering::Relaxed);
    let newcomer = r.admit_at(ip("192.0.2.1"), 10_000).unwrap();
    assert!(newcomer.evicted);
    assert_eq!(r.open(), (4, 2));
    let slots = r.lock();
    assert!(
        !slots.conns.contains_key(&mine[1].id),
        "the longest idle of its own"
    );
    assert!(
        slots.conns.contains_key(&other.id),
        "another client's is untouched"
    );
}

#[test]
fn busy_or_recently_active_connections_are_never_evicted() {
    let r = registry(100, 2);
    let a = r.admit(ip("192.0.2.1")).unwrap();
    let b = r.admit(ip("192.0.2.1")).unwrap();
    a.shared.last_active.store(0, Ordering::Relaxed);
    a.shared.busy.store(true, Ordering::Relaxed); // e.g. a long transfer
    b.shared.last_active.store(9_500, Ordering::Relaxed); // active 0.5 s ago
    assert_eq!(
        r.admit_at(ip("192.0.2.1"), 10_000).err(),
        Some(TcpRefusal::PerClient)
    );
    a.shared.busy.store(false, Ordering::Relaxed);
    assert!(r.admit_at(ip("192.0.2.1"), 10_000).unwrap().evicted);
}

/// A handler over the fuzz corpus zones (`www.example.test` has A records).
fn handler() -> Arc<Handler> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (zones, geo) = crate::routing::publish::load_sources(
        &root.join("fuzz/zones"),
        &root.join("geoip/meridian-sample.txt"),
    )
    .unwrap();
    let publisher = crate::routing::publish::Publisher::new(zones, geo, Arc::default()).unwrap();
    Arc::new(Handler::new(
        Arc::new(publisher),
        Arc::default(),
        super::super::handler::HandlerConfig::default(),
    ))
}

/// `www.example.test. A` with message id `id`, framed for TCP.
fn framed_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
    let mut framed = u16::try_from(q.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

/// Reads one framed answer; None on EOF.
async fn read_answer(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).await.ok()?;
    Some(msg)
}

const BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn drain_answers_the_query_in_flight_closes_idle_ones_and_refuses_new() {
    let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, shutdown) = watch::channel(false);
    let task = spawn_tcp_with_shutdown(listener, handler(), TcpLimits::default(), shutdown);

    // Both connections are served before the drain (an answer proves it).
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut mid = TcpStream::connect(addr).await.unwrap();
    for (s, id) in [(&mut idle, 1), (&mut mid, 2)] {
        s.write_all(&framed_query(id)).await.unwrap();
        let answer = tokio::time::timeout(BOUND, read_answer(s)).await.unwrap();
        assert_eq!(answer.unwrap()[..2], id.to_be_bytes());
    }
    // `mid` starts its next query: the length and half the message.
    let query = framed_query(3);
    let (first, rest) = query.split_at(query.len() / 2);
    mid.write_all(first).await.unwrap();
    // Let the server read the length prefix (loopback delivers at once; this is margin).
    tokio::time::sleep(Duration::from_millis(200)).await;

    drain.send(true).unwrap();

    // The idle connection is closed at once.
    let closed = tokio::time::timeout(BOUND, read_answer(&mut idle)).await;
    assert_eq!(
        closed.unwrap(),
        None,
        "idle connection not closed by the drain"
    );
    // New connections are refused once the accept loop has stopped.
    let deadline = Instant::now() + BOUND;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after the drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The query in flight gets its answer, then the connection closes.
    mid.write_all(rest).await.unwrap();
    let answer = tokio::time::timeout(BOUND, read_answer(&mut mid))
        .await
        .unwrap();
    assert_eq!(
        answer.expect("query in flight unanswered")[..2],
        3u16.to_be_bytes()
    );
    let closed = tokio::time::timeout(BOUND, read_answer(&mut mid)).await;
    assert_eq!(
        closed.unwrap(),
        None,
        "connection left open after its last answer"
    );
    // And the drain task completes.
    tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn without_a_drain_connections_are_served_after_the_sender_is_gone() {
    let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, shutdown) = watch::channel(false);
    let _task = spawn_tcp_with_shutdown(listener, handler(), TcpLimits::default(), shutdown);
    drop(drain);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&framed_query(9)).await.unwrap();
    let answer = tokio::time::timeout(BOUND, read_answer(&mut s))
        .await
        .unwrap();
    assert_eq!(answer.unwrap()[..2], 9u16.to_be_bytes());
}

#[test]
fn ipv6_listeners_are_v6_only_and_mapped_ones_can_bind() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let Ok(l) = tcp_listener("[::1]:0".parse().unwrap()) else {
            return; // no IPv6 on this machine
        };
        assert!(socket2::SockRef::from(&l).only_v6().unwrap());
        let u = udp_socket("[::1]:0".parse().unwrap()).unwrap();
        assert!(socket2::SockRef::from(&u).only_v6().unwrap());
        // A v4-mapped address binds (not V6ONLY: it only ever sees IPv4 clients).
        let mapped = tcp_listener("[::ffff:127.0.0.1]:0".parse().unwrap()).unwrap();
        assert!(!socket2::SockRef::from(&mapped).only_v6().unwrap());
    });
}

#[test]
fn full_table_of_busy_connections_refuses() {
    let r = registry(2, 10);
    let _a = r.admit(ip("192.0.2.1")).unwrap();
    let _b = r.admit(ip("192.0.2.2")).unwrap();
    // Both just became active: nobody has been idle MIN_IDLE_TO_EVICT.
    assert_eq!(r.admit(ip("192.0.2.3")).err(), Some(TcpRefusal::Full));
    assert_eq!(r.open(), (2, 2));
}

/// Starts a listener with `limits`; its address.
async fn serve_with(limits: TcpLimits) -> SocketAddr {
    let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, shutdown) = watch::channel(false);
    drop(drain);
    let _task = spawn_tcp_with_shutdown(listener, handler(), limits, shutdown);
    addr
}

#[tokio::test]
async fn a_pipelined_batch_is_answered_in_order_and_the_cap_counts_within_it() {
    // No cap: 1,000 queries in one write, 1,000 answers in order.
    let addr = serve_with(TcpLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let batch: Vec<u8> = (0..1000).flat_map(framed_query).collect();
    s.write_all(&batch).await.unwrap();
    for id in 0..1000u16 {
        let answer = tokio::time::timeout(BOUND, read_answer(&mut s))
            .await
            .unwrap();
        assert_eq!(answer.expect("answer")[..2], id.to_be_bytes());
    }
    // A cap of 3: three answers out of one batch of five, then the connection closes.
    let addr = serve_with(TcpLimits {
        max_queries: Some(3),
        ..TcpLimits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let batch: Vec<u8> = (0..5).flat_map(framed_query).collect();
    s.write_all(&batch).await.unwrap();
    for id in 0..3u16 {
        let answer = tokio::time::timeout(BOUND, read_answer(&mut s))
            .await
            .unwrap();
        assert_eq!(answer.expect("answer")[..2], id.to_be_bytes());
    }
    let closed = tokio::time::timeout(BOUND, read_answer(&mut s)).await;
    assert_eq!(closed.unwrap(), None, "open after the cap");
}

#[tokio::test]
async fn a_client_closing_its_side_still_gets_every_answer() {
    let addr = serve_with(TcpLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let batch: Vec<u8> = (0..20).flat_map(framed_query).collect();
    s.write_all(&batch).await.unwrap();
    s.shutdown().await.unwrap(); // half-close: no more queries, answers still wanted
    for id in 0..20u16 {
        let answer = tokio::time::timeout(BOUND, read_answer(&mut s))
            .await
            .unwrap();
        assert_eq!(answer.expect("answer")[..2], id.to_be_bytes());
    }
    let closed = tokio::time::timeout(BOUND, read_answer(&mut s)).await;
    assert_eq!(closed.unwrap(), None);
}
