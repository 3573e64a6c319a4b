//! A zone file (TOML, then optionally a NUL byte and an RFC 1035 master file it includes as
//! `records_file = "fuzz.zone"`) -> `load_zone` -> `compile` -> a query for every owner name
//! and type in it, whose responses must parse. Loading may fail; it must not panic.

#![no_main]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::RecordType;
use libfuzzer_sys::fuzz_target;
use meridian::config::load::load_zone;
use meridian::dns::answer::Writer;
use meridian::dns::wire;
use meridian::geo::GeoDb;
use meridian::routing::compile::{AllUp, compile};
use meridian::routing::select::Client;

#[path = "common.rs"]
mod common;

fn geo() -> Arc<GeoDb> {
    static GEO: OnceLock<Arc<GeoDb>> = OnceLock::new();
    Arc::clone(GEO.get_or_init(|| {
        Arc::new(
            GeoDb::open(&common::root().join("geoip/meridian-sample.txt"))
                .unwrap_or_else(|e| panic!("geoip: {e}")),
        )
    }))
}

/// A private directory per fuzzing process (libFuzzer may run several with -jobs).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("meridian-fuzz-zone-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let (toml, master) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let dir = dir();
    let zone_path = dir.join("fuzz.toml");
    if std::fs::write(&zone_path, toml).is_err()
        || std::fs::write(dir.join("fuzz.zone"), master).is_err()
    {
        return;
    }
    let Ok(zone) = load_zone(&zone_path) else {
        return;
    };
    let zone = Arc::new(zone);
    let Ok(table) = compile(&[Arc::clone(&zone)], geo(), &AllUp, 1) else {
        return;
    };
    let mut names: Vec<_> = zone
        .records
        .iter()
        .map(|r| (r.name.clone(), r.record_type()))
        .collect();
    names.push((zone.origin.clone(), RecordType::SOA));
    names.truncate(64);
    let client = Client {
        source: IpAddr::from([81, 2, 69, 160]),
        subnet: None,
    };
    let mut out = Vec::new();
    for (name, rtype) in names {
        for qtype in [rtype, RecordType::A, RecordType::AAAA, RecordType::ANY] {
            let mut msg = Message::query();
            msg.add_query(Query::query(name.clone(), qtype));
            let Ok(packet) = msg.to_vec() else { continue };
            let Ok(q) = wire::parse(&packet) else {
                continue;
            };
            let mut w = Writer::new(&mut out, &packet, &q, 65_535);
            table.answer(&q, &client, &mut w);
            w.finish();
            common::check_response(&out, 65_535, Some(msg.metadata.id), "zone answer");
        }
    }
});
