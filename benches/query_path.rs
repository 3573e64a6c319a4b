//! Micro-benchmarks of the query path, stage by stage, so a regression shows without dnsperf:
//! parse, table lookup (static / NXDOMAIN / geo / NS with additional data), GeoIP (direct and through the per-thread
//! cache), encode, and the whole `Handler::handle`. Uses zones/example.toml and the GeoIP test
//! database in ../shared/geoip. Run: `cargo bench --bench query_path`.

// Like tests: a fixture that cannot be set up should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use meridian::dns::answer::{Owner, Section, Writer};
use meridian::dns::handler::{Handler, HandlerConfig};
use meridian::dns::metrics::{DnsMetrics, Transport};
use meridian::dns::wire;
use meridian::geo::GeoDb;
use meridian::routing::counters::TableMetrics;
use meridian::routing::geo_cache;
use meridian::routing::publish::{Publisher, load_sources};
use meridian::routing::select::Client;

fn geoip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/geoip/GeoIP2-City-Test.mmdb")
}

/// An A query with EDNS and, optionally, an IPv4 ECS option of `prefix` bits.
fn query(name: &str, ecs: Option<([u8; 4], u8)>) -> Vec<u8> {
    query_type(name, 1, ecs)
}

/// Like [`query`] for type `qtype`.
fn query_type(name: &str, qtype: u16, ecs: Option<([u8; 4], u8)>) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    let mut options = Vec::new();
    if let Some((addr, prefix)) = ecs {
        let bytes = usize::from(prefix).div_ceil(8);
        options.extend_from_slice(&[0, 8, 0, (4 + bytes) as u8, 0, 1, prefix, 0]);
        options.extend_from_slice(&addr[..bytes]);
    }
    p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    p.extend_from_slice(&(options.len() as u16).to_be_bytes());
    p.extend_from_slice(&options);
    p
}

fn benches(c: &mut Criterion) {
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    // Counters as `serve` has them (created by the compile), registered nowhere.
    let (zones, geo) = load_sources(&zones, &geoip()).unwrap();
    let tables = Arc::new(TableMetrics::default());
    let publisher = Arc::new(Publisher::new(zones, geo, tables).unwrap());
    let handler = Handler::new(
        Arc::clone(&publisher),
        Arc::new(DnsMetrics::default()),
        HandlerConfig::default(),
    );
    let table = publisher.table();
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();

    let cases = [
        ("static", query("static.gslb.example.test.", None)),
        ("nxdomain", query("nx1.gslb.example.test.", None)),
        ("geo", query("www.gslb.example.test.", None)),
        (
            "geo_ecs",
            query("www.gslb.example.test.", Some(([2, 2, 3, 0], 24))),
        ),
        // The apex NS set with the in-zone nameservers' addresses as additional data.
        ("ns_additional", query_type("gslb.example.test.", 2, None)),
    ];

    let mut g = c.benchmark_group("parse");
    for (name, packet) in &cases {
        g.bench_function(*name, |b| b.iter(|| wire::parse(black_box(packet))));
    }
    g.finish();

    let mut g = c.benchmark_group("lookup");
    let mut out = Vec::with_capacity(1232);
    for (name, packet) in &cases {
        let q = wire::parse(packet).unwrap();
        let client = Client {
            source: localhost,
            subnet: q.edns.and_then(|e| e.client_subnet),
        };
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut w = Writer::new(&mut out, packet, &q, 1232);
                black_box(table.answer(black_box(&q), &client, &mut w));
                w.finish()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("geo");
    let gb: IpAddr = "2.2.3.0".parse().unwrap();
    g.bench_function("maxminddb", |b| b.iter(|| table.geo.lookup(black_box(gb))));
    geo_cache::bind(&table.geo);
    g.bench_function("cached", |b| {
        b.iter(|| geo_cache::lookup(&table.geo, black_box(gb)))
    });
    let other = Arc::new(GeoDb::open(&geoip()).unwrap());
    g.bench_function("bind", |b| b.iter(|| geo_cache::bind(black_box(&other))));
    g.finish();

    let mut g = c.benchmark_group("encode");
    let packet = &cases[0].1;
    let q = wire::parse(packet).unwrap();
    let rdata: [&[u8]; 2] = [&[192, 0, 2, 80], &[192, 0, 2, 81]];
    g.bench_function("two_a_records", |b| {
        b.iter(|| {
            let mut w = Writer::new(&mut out, packet, &q, 1232);
            w.rrset(Section::Answer, Owner::Question(0), 1, 3600, rdata);
            w.finish()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("handle");
    for (name, packet) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| handler.handle(black_box(packet), localhost, Transport::Udp, &mut out))
        });
    }
    g.finish();
}

criterion_group!(query_path, benches);
criterion_main!(query_path);
