//! The DNS edge as clients see it: address-keyed features (subnet overrides, allow-transfer,
//! RRL, the per-client TCP cap) over IPv4, IPv6 (`::1`) and v4-mapped listeners; the TCP
//! per-client cap closing a client's own oldest idle connection; and, against `knotd` on
//! loopback serving the same zone file, RRL counts and protocol corners.
//!
//! Every client is on loopback (127.0.0.0/8, ::1); knotd is started on loopback in a
//! temporary directory and killed on drop.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{Meridian, NET_TIMEOUT, Query, SILENCE, frame, read_frame};

const DUAL: &str = "dnsedge/dual";
/// The geo service: 192.0.2.1 (`near`) for loopback sources, 192.0.2.2 (`far`) otherwise.
const GEO: &str = "geo.edge.test.";
const NEAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// Every DNS address of the ready line (`ready dns=A,B,C api=...`), in flag order.
fn dns_listeners(ns: &Meridian) -> Vec<SocketAddr> {
    // The harness hands the ready line over before it logs it: wait (bounded) for the log.
    let deadline = Instant::now() + NET_TIMEOUT;
    let log = loop {
        let log = ns.log();
        if log.contains("ready dns=") {
            break log;
        }
        assert!(Instant::now() < deadline, "no ready line in the log");
        thread::sleep(Duration::from_millis(10));
    };
    let line = log
        .lines()
        .find_map(|l| l.split_once("ready ").map(|(_, rest)| rest))
        .unwrap();
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("dns="))
        .expect("ready line without dns=")
        .split(',')
        .map(|a| a.parse().unwrap())
        .collect()
}

/// Where a client connects to reach `listener`: a v4-mapped listener is reached over IPv4.
fn reach(listener: SocketAddr) -> SocketAddr {
    match listener {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, a.port())),
            None => listener,
        },
        v4 => v4,
    }
}

/// The three listener kinds of a server started with [`serve_dual`], with a client source
/// address for each: (what, listener to reach, client source).
fn listener_kinds(ns: &Meridian) -> Vec<(&'static str, SocketAddr, IpAddr)> {
    let all = dns_listeners(ns);
    assert_eq!(
        all.len(),
        3,
        "want IPv4, v4-mapped and IPv6 listeners: {all:?}"
    );
    vec![
        ("ipv4", all[0], IpAddr::from([127, 0, 0, 1])),
        ("v4-mapped", reach(all[1]), IpAddr::from([127, 0, 0, 1])),
        ("ipv6", all[2], "::1".parse().unwrap()),
    ]
}

/// Serves `DUAL` on 127.0.0.1 (the harness's), `[::ffff:127.0.0.1]` and `[::1]`.
fn serve_dual(extra: &[&str]) -> Meridian {
    let mut args = vec![
        "--dns-listen",
        "[::ffff:127.0.0.1]:0",
        "--dns-listen",
        "[::1]:0",
    ];
    args.extend_from_slice(extra);
    Meridian::serve_with(DUAL, &args)
}

/// A UDP socket with source address `src`, connected to `server`.
fn udp_from(src: IpAddr, server: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind((src, 0)).unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.connect(server).unwrap();
    s
}

/// A TCP connection from `src` to `server`.
fn tcp_from(src: IpAddr, server: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(server), Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((src, 0)).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.connect_timeout(&server.into(), NET_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {src} to {server}: {e}"));
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(NET_TIMEOUT)).unwrap();
    s
}

/// One UDP exchange from `src`; None if nothing came back within `wait`.
fn udp_ask(src: IpAddr, server: SocketAddr, query: &[u8], wait: Duration) -> Option<Message> {
    let s = udp_from(src, server);
    s.set_read_timeout(Some(wait)).unwrap();
    s.send(query).unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = s.recv(&mut buf).ok()?;
    Some(Message::from_vec(&buf[..n]).unwrap())
}

/// One query over an open TCP connection; None if the server closed it.
fn tcp_ask(s: &mut TcpStream, query: &[u8]) -> Option<Message> {
    s.write_all(&frame(query)).ok()?;
    read_frame(s).map(|raw| Message::from_vec(&raw).unwrap())
}

fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn geo_query(id: u16) -> Vec<u8> {
    Query::new(GEO, RecordType::A).id(id).to_bytes()
}

// ---- dual-stack: every address-keyed feature over every listener kind ----

#[test]
fn subnet_overrides_and_allow_transfer_see_ipv4_clients_of_a_mapped_listener_as_ipv4() {
    let ns = serve_dual(&[
        "--allow-transfer",
        "127.0.0.0/8",
        "--allow-transfer",
        "::1/128",
    ]);
    for (what, server, src) in listener_kinds(&ns) {
        let udp = udp_ask(src, server, &geo_query(1), NET_TIMEOUT)
            .unwrap_or_else(|| panic!("{what}: no udp answer"));
        assert_eq!(
            a_records(&udp),
            [NEAR],
            "{what} over udp: subnet override missed"
        );
        let mut tcp = tcp_from(src, server);
        let answer = tcp_ask(&mut tcp, &geo_query(2)).expect("tcp answer");
        assert_eq!(
            a_records(&answer),
            [NEAR],
            "{what} over tcp: subnet override missed"
        );
        // allow-transfer 127.0.0.0/8 (and ::1) admits the client, whatever the socket.
        let axfr = Query::new("edge.test.", RecordType::AXFR).id(3).to_bytes();
        let first = tcp_ask(&mut tcp, &axfr).expect("transfer answer");
        assert_eq!(
            first.metadata.response_code,
            ResponseCode::NoError,
            "{what}: transfer refused"
        );
        assert_eq!(first.answers[0].record_type(), RecordType::SOA, "{what}");
    }
}

#[test]
fn rrl_buckets_ipv4_clients_of_a_mapped_listener_per_prefix() {
    // Rate 2, slip 0: a fresh bucket answers a burst of 4 x 2 (Knot's bucket capacity).
    let ns = serve_dual(&["--rrl-rate", "2", "--rrl-slip", "0"]);
    // One name per listener: the same client on two sockets is the same client, with the
    // same buckets (a bucket is prefix, response class and name).
    let names = ["www.edge.test.", "ns1.edge.test.", GEO];
    for ((what, server, flooder), name) in listener_kinds(&ns).into_iter().zip(names) {
        let q = Query::new(name, RecordType::A).id(7).to_bytes();
        // The flooder's bucket empties: of 40 quick queries at most 8 + 2 per second pass.
        let s = udp_from(flooder, server);
        s.set_read_timeout(Some(SILENCE)).unwrap();
        let started = Instant::now();
        for _ in 0..40 {
            s.send(&q).unwrap();
        }
        let mut buf = vec![0u8; 4096];
        let mut answered = 0u64;
        while s.recv(&mut buf).is_ok() {
            answered += 1;
        }
        let secs = started.elapsed().as_secs() + 1;
        assert!(
            (1..=8 + 2 * secs).contains(&answered),
            "{what}: flood got {answered} answers in {secs}s"
        );
        if what == "ipv6" {
            continue; // ::1 is the only IPv6 loopback address: no second prefix to try.
        }
        // Another /24 (127.0.1.0/24) has its own bucket: all of a small burst is answered.
        let other = IpAddr::from([127, 0, 1, 1]);
        let s = udp_from(other, server);
        s.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
        for i in 0..5 {
            s.send(&q).unwrap();
            assert!(
                s.recv(&mut buf).is_ok(),
                "{what}: query {i} from another /24 was rate-limited with the flooder"
            );
        }
    }
}

#[test]
fn tcp_per_client_cap_counts_ipv4_clients_of_a_mapped_listener_per_address() {
    let ns = serve_dual(&["--max-tcp-connections-per-client", "2"]);
    for (what, server, src) in listener_kinds(&ns) {
        let mut held: Vec<TcpStream> = (0..2).map(|_| tcp_from(src, server)).collect();
        for (i, s) in held.iter_mut().enumerate() {
            assert!(
                tcp_ask(s, &geo_query(i as u16)).is_some(),
                "{what}: conn {i}"
            );
        }
        // At its cap, with nothing idle long enough to give up: the third is closed.
        let mut third = tcp_from(src, server);
        assert!(
            tcp_ask(&mut third, &geo_query(9)).is_none(),
            "{what}: a third connection got in at cap 2"
        );
        if what == "ipv6" {
            continue;
        }
        // Another IPv4 address is another client, also on the mapped socket (a /64 key on
        // ::ffff:a.b.c.d would lump every IPv4 client together).
        let mut other = tcp_from(IpAddr::from([127, 0, 0, 2]), server);
        assert!(
            tcp_ask(&mut other, &geo_query(10)).is_some(),
            "{what}: another address was refused"
        );
    }
}

// ---- the per-client TCP cap evicts the client's own oldest idle connection ----

/// Waits out the server's MIN_IDLE_TO_EVICT (1 s): the connections must have been idle that
/// long to be given up for a newcomer. This is the server's threshold, not synchronisation.
fn wait_until_idle() {
    thread::sleep(Duration::from_millis(1_300));
}

#[test]
fn a_client_at_its_cap_gets_in_by_closing_its_oldest_idle_connection() {
    // The default cap (64), over IPv4.
    let ns = Meridian::serve("dnsedge/dual");
    let me = IpAddr::from([127, 0, 0, 1]);
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..64u16 {
        let mut s = tcp_from(me, ns.dns);
        assert!(tcp_ask(&mut s, &geo_query(i)).is_some(), "connection {i}");
        held.push(s);
    }
    wait_until_idle();
    let mut newcomer = tcp_from(me, ns.dns);
    let answer = tcp_ask(&mut newcomer, &geo_query(100)).expect("the 65th was refused");
    assert_eq!(a_records(&answer), [NEAR]);
    // The oldest idle one was closed for it; the next oldest still serves.
    assert!(
        read_frame(&mut held[0]).is_none(),
        "the oldest idle connection is open"
    );
    assert!(tcp_ask(&mut held[1], &geo_query(101)).is_some());
    assert_eq!(ns.metric("meridian_tcp_connections_evicted_total"), 1.0);
    assert_eq!(
        ns.metric("meridian_tcp_connections_refused_total{reason=\"per_client\"}"),
        0.0
    );
}

#[test]
fn own_idle_eviction_works_over_ipv6_and_mapped_listeners() {
    let ns = serve_dual(&["--max-tcp-connections-per-client", "3"]);
    for (what, server, src) in listener_kinds(&ns).into_iter().skip(1) {
        let mut held: Vec<TcpStream> = (0..3).map(|_| tcp_from(src, server)).collect();
        for (i, s) in held.iter_mut().enumerate() {
            assert!(
                tcp_ask(s, &geo_query(i as u16)).is_some(),
                "{what}: conn {i}"
            );
        }
        wait_until_idle();
        let mut newcomer = tcp_from(src, server);
        assert!(
            tcp_ask(&mut newcomer, &geo_query(50)).is_some(),
            "{what}: refused although idle connections could make room"
        );
        assert!(
            read_frame(&mut held[0]).is_none(),
            "{what}: oldest not closed"
        );
    }
}
