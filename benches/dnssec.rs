//! DNSSEC costs on the query path: one signature per algorithm, and `Handler::handle` on the
//! signed test zone (`tests/fixtures/dnssec/signed`) with DO=0 and DO=1 for a static answer, a
//! steered answer with ECS (signed once, then from the cache), and NXDOMAIN for a new random
//! name each time (a fresh NSEC signature per query). Run: `cargo bench --bench dnssec`.

// Like tests: a fixture that cannot be set up should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::rr::Name;
use meridian::dns::handler::{Handler, HandlerConfig};
use meridian::dns::metrics::{DnsMetrics, Transport};
use meridian::dnssec::sign::{Validity, sign_rrset};
use meridian::dnssec::{Algorithm, ZoneKey};
use meridian::routing::counters::TableMetrics;
use meridian::routing::publish::{Publisher, load_sources};

/// A query with EDNS (DO as given) and, optionally, an IPv4 ECS option of `prefix` bits.
fn query(name: &str, dnssec_ok: bool, ecs: Option<([u8; 4], u8)>) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut options = Vec::new();
    if let Some((addr, prefix)) = ecs {
        let bytes = usize::from(prefix).div_ceil(8);
        options.extend_from_slice(&[0, 8, 0, (4 + bytes) as u8, 0, 1, prefix, 0]);
        options.extend_from_slice(&addr[..bytes]);
    }
    let flags = if dnssec_ok { 0x80 } else { 0 };
    p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, flags, 0]);
    p.extend_from_slice(&(options.len() as u16).to_be_bytes());
    p.extend_from_slice(&options);
    p
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("dnssec_sign");
    let zone = Name::from_ascii("signed.test.").unwrap();
    let owner = b"\x03www\x06signed\x04test\x00";
    let apex = b"\x06signed\x04test\x00";
    let validity = Validity {
        inception: 1,
        expiration: 2,
    };
    for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
        let key = ZoneKey::generate(&zone, alg, false, 0).unwrap();
        g.bench_function(alg.mnemonic(), |b| {
            b.iter(|| {
                sign_rrset(
                    &key,
                    apex,
                    owner,
                    1,
                    30,
                    &[black_box(&[192, 0, 2, 1][..])],
                    validity,
                )
            })
        });
    }
    g.finish();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (zones, geo) = load_sources(
        &root.join("tests/fixtures/dnssec/signed"),
        &root.join("geoip/meridian-sample.txt"),
    )
    .unwrap();
    let publisher =
        Arc::new(Publisher::new(zones, geo, Arc::new(TableMetrics::default())).unwrap());
    let handler = Handler::new(
        publisher,
        Arc::new(DnsMetrics::default()),
        HandlerConfig::default(),
    );
    let source: IpAddr = "192.0.2.200".parse().unwrap();
    let mut out = Vec::with_capacity(1232);
    let mut g = c.benchmark_group("dnssec_handle");
    for dnssec_ok in [false, true] {
        let tag = if dnssec_ok { "do1" } else { "do0" };
        for (name, packet) in [
            ("static", query("static.signed.test.", dnssec_ok, None)),
            (
                "geo_ecs",
                query("geo.signed.test.", dnssec_ok, Some(([10, 1, 2, 0], 24))),
            ),
        ] {
            g.bench_function(format!("{name}_{tag}"), |b| {
                b.iter(|| handler.handle(black_box(&packet), source, Transport::Udp, &mut out))
            });
        }
        // A new name every query: "nx" + 8 hex digits, rewritten in place.
        let mut packet = query("nx00000000.signed.test.", dnssec_ok, None);
        let mut n: u32 = 0;
        g.bench_function(format!("nxdomain_random_{tag}"), |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let hex = format!("{n:08x}");
                packet[15..23].copy_from_slice(hex.as_bytes());
                handler.handle(black_box(&packet), source, Transport::Udp, &mut out)
            })
        });
    }
    g.finish();
}

criterion_group!(dnssec, benches);
criterion_main!(dnssec);
