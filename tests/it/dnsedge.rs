//! The DNS edge as clients see it: address-keyed features (subnet overrides, allow-transfer,
//! RRL, the per-client TCP cap) over IPv4, IPv6 (`::1`) and v4-mapped listeners; the TCP
//! per-client cap closing a client's own oldest idle connection; and, against `knotd` on
//! loopback serving the same zone file, RRL counts and protocol corners.
//!
//! Every client is on loopback (127.0.0.0/8, ::1); knotd is started on loopback in a
//! temporary directory and killed on drop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::knot::{Knot, KnotOptions};
use crate::harness::{
    Meridian, NET_TIMEOUT, Query, SILENCE, Transport, a_records, ask_tcp, exchange_raw, read_frame,
    tcp_from, udp_from,
};

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

/// One UDP exchange from `src`; None if nothing came back within `wait`.
fn udp_ask(src: IpAddr, server: SocketAddr, query: &[u8], wait: Duration) -> Option<Message> {
    let s = udp_from(src, server);
    s.set_read_timeout(Some(wait)).unwrap();
    s.send(query).unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = s.recv(&mut buf).ok()?;
    Some(Message::from_vec(&buf[..n]).unwrap())
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
        let answer = ask_tcp(&mut tcp, &geo_query(2)).expect("tcp answer");
        assert_eq!(
            a_records(&answer),
            [NEAR],
            "{what} over tcp: subnet override missed"
        );
        // allow-transfer 127.0.0.0/8 (and ::1) admits the client, whatever the socket.
        let axfr = Query::new("edge.test.", RecordType::AXFR).id(3).to_bytes();
        let first = ask_tcp(&mut tcp, &axfr).expect("transfer answer");
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
                ask_tcp(s, &geo_query(i as u16)).is_some(),
                "{what}: conn {i}"
            );
        }
        // At its cap, with nothing idle long enough to give up: the third is closed.
        let mut third = tcp_from(src, server);
        assert!(
            ask_tcp(&mut third, &geo_query(9)).is_none(),
            "{what}: a third connection got in at cap 2"
        );
        if what == "ipv6" {
            continue;
        }
        // Another IPv4 address is another client, also on the mapped socket (a /64 key on
        // ::ffff:a.b.c.d would lump every IPv4 client together).
        let mut other = tcp_from(IpAddr::from([127, 0, 0, 2]), server);
        assert!(
            ask_tcp(&mut other, &geo_query(10)).is_some(),
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
        assert!(ask_tcp(&mut s, &geo_query(i)).is_some(), "connection {i}");
        held.push(s);
    }
    wait_until_idle();
    let mut newcomer = tcp_from(me, ns.dns);
    let answer = ask_tcp(&mut newcomer, &geo_query(100)).expect("the 65th was refused");
    assert_eq!(a_records(&answer), [NEAR]);
    // The oldest idle one was closed for it; the next oldest still serves.
    assert!(
        read_frame(&mut held[0]).is_none(),
        "the oldest idle connection is open"
    );
    assert!(ask_tcp(&mut held[1], &geo_query(101)).is_some());
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
                ask_tcp(s, &geo_query(i as u16)).is_some(),
                "{what}: conn {i}"
            );
        }
        wait_until_idle();
        let mut newcomer = tcp_from(src, server);
        assert!(
            ask_tcp(&mut newcomer, &geo_query(50)).is_some(),
            "{what}: refused although idle connections could make room"
        );
        assert!(
            read_frame(&mut held[0]).is_none(),
            "{what}: oldest not closed"
        );
    }
}

// ---- against knotd: the same zone file, the same packets ----

const KNOT_FIXTURE: &str = "dnsedge/knot";

/// A knotd serving `rrl.test.` from the fixture's zone file, with `mod-rrl` (rate, slip)
/// when given.
fn knot(rrl: Option<(u32, u32)>) -> Knot {
    let zone = crate::harness::fixture(KNOT_FIXTURE).join("rrl.test.zone");
    Knot::serve(
        "rrl.test.",
        &zone,
        KnotOptions {
            rrl,
            ..KnotOptions::default()
        },
    )
}

/// Sends every query of `burst` from `src` to `server` as fast as possible, then counts the
/// replies until the server falls silent: (full answers, truncated answers).
fn send_burst(src: IpAddr, server: SocketAddr, burst: &[Vec<u8>]) -> (u32, u32) {
    let s = udp_from(src, server);
    s.set_read_timeout(Some(SILENCE)).unwrap();
    for q in burst {
        s.send(q).unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = vec![0u8; 65_535];
    while let Ok(n) = s.recv(&mut buf) {
        assert!(n >= 12);
        if buf[2] & 0x02 != 0 {
            truncated += 1;
        } else {
            full += 1;
        }
    }
    (full, truncated)
}

/// Waits until just past the start of a wall-clock second, so that a short burst stays in
/// one second of Knot's clock (it refills on wall-clock seconds). Not synchronisation: it
/// only makes a second boundary inside a burst less likely; the tolerance covers one.
fn at_second_start() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
    thread::sleep(Duration::from_secs(1) - into + Duration::from_millis(20));
}

#[test]
#[ignore = "system test: needs knotd (Debian knot); run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn rrl_answers_the_same_bursts_as_knot() {
    let _heavy = crate::robust::heavy();
    const RATE: u32 = 5;
    // Slip 1: every limited response comes back truncated, so every query gets a reply and
    // the counts do not depend on Knot's random slip draw.
    let knot = knot(Some((RATE, 1)));
    let ns = Meridian::serve_with(
        KNOT_FIXTURE,
        &["--rrl-rate", &RATE.to_string(), "--rrl-slip", "1"],
    );
    let q =
        |name: &str, qtype: RecordType, id: usize| Query::new(name, qtype).id(id as u16).to_bytes();
    let bursts: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "one name, 30 times",
            (0..30)
                .map(|i| q("www.rrl.test.", RecordType::A, i))
                .collect(),
        ),
        (
            "ten names, 3 times each (the reported defect: 5 answers)",
            (0..30)
                .map(|i| q(&format!("n{}.rrl.test.", i % 10), RecordType::A, i))
                .collect(),
        ),
        (
            "30 random NXDOMAIN names (one bucket: the zone)",
            (0..30)
                .map(|i| q(&format!("nx{i}.rrl.test."), RecordType::A, i))
                .collect(),
        ),
        (
            "30 random names under a wildcard (one bucket: the zone)",
            (0..30)
                .map(|i| q(&format!("r{i}.wild.rrl.test."), RecordType::A, i))
                .collect(),
        ),
        (
            "NODATA for one name, 30 times",
            (0..30)
                .map(|i| q("www.rrl.test.", RecordType::AAAA, i))
                .collect(),
        ),
        (
            "one referral, 30 times",
            (0..30)
                .map(|i| q("a.sub.rrl.test.", RecordType::A, i))
                .collect(),
        ),
        (
            "referrals for 30 names",
            (0..30)
                .map(|i| q(&format!("h{i}.sub.rrl.test."), RecordType::A, i))
                .collect(),
        ),
    ];
    let mut report = Vec::new();
    for (i, (what, burst)) in bursts.iter().enumerate() {
        // Each burst from its own /24, to each server from the same address.
        let src = IpAddr::from([127, 0, 20 + i as u8, 1]);
        at_second_start();
        let knot_counts = send_burst(src, knot.addr, burst);
        at_second_start();
        let ours = send_burst(src, ns.dns, burst);
        report.push(format!("{what}: knot {knot_counts:?}, meridian {ours:?}"));
        // Every query got a reply (slip 1) from both.
        assert_eq!(
            knot_counts.0 + knot_counts.1,
            30,
            "knot lost replies: {what}"
        );
        assert_eq!(ours.0 + ours.1, 30, "meridian lost replies: {what}");
        // Tolerance: a burst lasts well under a second, but may cross one second boundary of
        // either server's clock (Knot's wall clock, Meridian's own), which refills a limited
        // bucket by RATE: the full-answer counts may differ by at most RATE.
        assert!(
            ours.0.abs_diff(knot_counts.0) <= RATE,
            "{what}: knot answered {knot_counts:?} (full, truncated), meridian {ours:?}\n{}",
            report.join("\n")
        );
    }
    println!("rrl against knot:\n{}", report.join("\n"));
}

/// What the comparison looks at in a reply.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    /// RCODE with the extended bits of the OPT record.
    rcode: u16,
    aa: bool,
    tc: bool,
    rd: bool,
    counts: [u16; 4],
    opt: bool,
}

fn summarise(raw: &[u8]) -> Summary {
    let msg = Message::from_vec(raw).unwrap();
    let ext = msg.edns.as_ref().map_or(0, |e| u16::from(e.rcode_high()));
    let count = |at: usize| u16::from_be_bytes([raw[at], raw[at + 1]]);
    Summary {
        rcode: (ext << 4) | u16::from(raw[3] & 0x0F),
        aa: raw[2] & 0x04 != 0,
        tc: raw[2] & 0x02 != 0,
        rd: raw[2] & 0x01 != 0,
        counts: [count(4), count(6), count(8), count(10)],
        opt: msg.edns.is_some(),
    }
}

/// How Meridian's reply must relate to Knot's for a case.
enum Expect {
    /// The same rcode, flags, counts and OPT presence.
    SameAsKnot,
    /// A deliberate difference: Meridian's rcode and OPT presence, and why.
    Differs {
        rcode: u16,
        opt: bool,
        why: &'static str,
    },
}

#[test]
#[ignore = "system test: needs knotd (Debian knot); run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn protocol_corners_are_answered_like_knot_or_differ_on_purpose() {
    use crate::harness::{header, wire_name};
    let knot = knot(None);
    let ns = Meridian::serve(KNOT_FIXTURE);
    let question = |name: &str, qtype: u16| {
        let mut q = wire_name(name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    };
    let opt = |version: u8, rdata: &[u8]| {
        let mut o = vec![0, 0, 41, 0x04, 0xd0, 0, version, 0, 0];
        o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        o.extend_from_slice(rdata);
        o
    };
    let www = question("www.rrl.test.", 1);
    let ecs_scoped = [0, 8, 0, 7, 0, 1, 24, 8, 10, 1, 2];
    let bad_option = [0, 8, 0, 16, 0];
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "an answer",
            [header(1, 0x0100, 1, 0, 0, 0), www.clone()].concat(),
            Expect::SameAsKnot,
        ),
        (
            "an answer with EDNS",
            [header(1, 0x0100, 1, 0, 0, 1), www.clone(), opt(0, &[])].concat(),
            Expect::SameAsKnot,
        ),
        (
            "NXDOMAIN",
            [header(1, 0, 1, 0, 0, 0), question("nope.rrl.test.", 1)].concat(),
            Expect::SameAsKnot,
        ),
        (
            "NODATA",
            [header(1, 0, 1, 0, 0, 0), question("www.rrl.test.", 28)].concat(),
            Expect::SameAsKnot,
        ),
        (
            "EDNS version 1",
            [header(1, 0, 1, 0, 0, 1), www.clone(), opt(1, &[])].concat(),
            Expect::SameAsKnot,
        ),
        (
            "OPT in the answer section",
            [header(1, 0x0100, 1, 1, 0, 0), www.clone(), opt(0, &[])].concat(),
            Expect::SameAsKnot,
        ),
        (
            "OPT in the authority section",
            [header(1, 0x0100, 1, 0, 1, 0), www.clone(), opt(0, &[])].concat(),
            Expect::SameAsKnot,
        ),
        (
            "bytes after the last record",
            [header(1, 0x0100, 1, 0, 0, 0), www.clone(), vec![1, 2]].concat(),
            Expect::SameAsKnot,
        ),
        (
            "STATUS opcode",
            [header(1, 2 << 11, 1, 0, 0, 0), www.clone()].concat(),
            Expect::SameAsKnot,
        ),
        (
            "EDNS version 1 with a malformed option",
            [
                header(1, 0x0100, 1, 0, 0, 1),
                www.clone(),
                opt(1, &bad_option),
            ]
            .concat(),
            Expect::Differs {
                rcode: 16,
                opt: true,
                why: "RFC 6891 6.1.3: the version is checked first (Knot 3.2 parses the \
                      options first: FORMERR)",
            },
        ),
        (
            "OPT in answer and additional sections",
            [
                header(1, 0x0100, 1, 1, 0, 1),
                www.clone(),
                opt(0, &[]),
                opt(0, &[]),
            ]
            .concat(),
            Expect::Differs {
                rcode: 1,
                opt: true,
                why: "RFC 6891 6.1.1: a query with OPT gets OPT back, errors included (Knot \
                      3.2 leaves it out)",
            },
        ),
        (
            "TSIG qtype",
            [header(1, 0, 1, 0, 0, 0), question("www.rrl.test.", 250)].concat(),
            Expect::Differs {
                rcode: 4,
                opt: false,
                why: "a meta-type is not data: NOTIMP (Knot 3.2 answers NODATA)",
            },
        ),
        (
            "TKEY qtype",
            [
                header(1, 0, 1, 0, 0, 1),
                question("www.rrl.test.", 249),
                opt(0, &[]),
            ]
            .concat(),
            Expect::Differs {
                rcode: 4,
                opt: true,
                why: "a meta-type is not data: NOTIMP (Knot 3.2 answers NODATA)",
            },
        ),
        (
            "ECS with a non-zero scope",
            [
                header(1, 0x0100, 1, 0, 0, 1),
                www.clone(),
                opt(0, &ecs_scoped),
            ]
            .concat(),
            Expect::Differs {
                rcode: 1,
                opt: true,
                why: "RFC 7871 6: SCOPE must be 0 in queries (Knot without its geoip \
                      module ignores ECS)",
            },
        ),
    ];
    let mut report = Vec::new();
    for (what, packet, expect) in &cases {
        for transport in Transport::ALL {
            let knot_reply = exchange_raw(knot.addr, packet, transport, NET_TIMEOUT)
                .unwrap_or_else(|| panic!("knotd did not answer {what} over {transport:?}"));
            let ours = exchange_raw(ns.dns, packet, transport, NET_TIMEOUT)
                .unwrap_or_else(|| panic!("meridian did not answer {what} over {transport:?}"));
            let (k, m) = (summarise(&knot_reply), summarise(&ours));
            report.push(format!(
                "{what} ({transport:?}): knot {k:?}\n    meridian {m:?}"
            ));
            match expect {
                Expect::SameAsKnot => assert_eq!(m, k, "{what} over {transport:?}"),
                Expect::Differs { rcode, opt, why } => {
                    assert_eq!(
                        (m.rcode, m.opt),
                        (*rcode, *opt),
                        "{what} over {transport:?}: {why}"
                    );
                    // The question goes back whenever it parsed, as Knot sends it.
                    assert_eq!(
                        m.counts[0], 1,
                        "{what} over {transport:?}: question missing"
                    );
                }
            }
        }
    }
    println!("protocol corners against knot:\n{}", report.join("\n"));
}
