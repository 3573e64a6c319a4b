//! A per-thread cache of GeoIP answers, one entry per database network.
//!
//! A MaxMind lookup walks the search tree and decodes the record (about half a microsecond),
//! yet every address of the network it lands in gets the same [`Location`]. So each query
//! thread keeps a small direct-mapped cache of networks it has seen: a hit is a mask and a
//! compare. Results are exact, never approximate: an entry answers only for addresses inside
//! the network the database itself returned, and only for the database it came from.
//!
//! The cache is bound to one database at a time ([`bind`], called by the table before it
//! answers): it holds a `Weak` to the database's `Arc`, which keeps the allocation's address
//! from being reused, so pointer equality means "same database" and a table swap that brings a
//! new database empties the cache. Lookups through any other `GeoDb` (explain, tests) bypass it.
//! Never allocates on the query path after the first bind; never locks.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::{Arc, Weak};

use crate::geo::{GeoDb, Location};

/// Entries per thread. A power of two; 4096 networks x 48 bytes is under 200 KiB.
const ENTRIES: usize = 4096;

#[derive(Clone, Copy)]
struct Entry {
    /// The network's first address; IPv4 as a mapped IPv6 address so both share one key type.
    net: u128,
    /// Prefix length of the network, in bits of the 128-bit key.
    prefix: u8,
    location: Location,
}

struct Cache {
    db: Weak<GeoDb>,
    entries: Vec<Option<Entry>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache { db: Weak::new(), entries: Vec::new() })
    };
}

/// Points this thread's cache at `db`, emptying it if it held another database's answers.
pub fn bind(db: &Arc<GeoDb>) {
    CACHE.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return;
        };
        if cache.db.as_ptr() != Arc::as_ptr(db) {
            cache.db = Arc::downgrade(db);
            cache.entries.clear();
            cache.entries.resize(ENTRIES, None);
        }
    });
}

/// The 128-bit key of an address and the width its family adds to a prefix length.
fn key(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), 96),
        IpAddr::V6(a) => (u128::from(a), 0),
    }
}

/// Keeps the top `bits` bits of `v`.
fn mask(v: u128, bits: u8) -> u128 {
    match bits {
        0 => 0,
        b if b >= 128 => v,
        b => v & (u128::MAX << (128 - u32::from(b))),
    }
}

/// Slot of an address: a hash of its /24 (IPv4) or /48 (IPv6), the coarsest split that still
/// spreads the networks of real databases.
fn slot(k: u128, family_bits: u8) -> usize {
    let coarse = mask(k, family_bits + if family_bits == 96 { 24 } else { 48 });
    let h = (coarse ^ (coarse >> 64)) as u64;
    // Fibonacci hashing: the top bits of the product are well mixed.
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - ENTRIES.trailing_zeros())) as usize
}

/// Looks `addr` up in `db`, through this thread's cache when it is bound to `db`.
pub fn lookup(db: &GeoDb, addr: IpAddr) -> Location {
    let (k, family_bits) = key(addr);
    let i = slot(k, family_bits);
    let hit = CACHE.with(|cache| {
        let cache = cache.try_borrow().ok()?;
        if !std::ptr::eq(cache.db.as_ptr(), db) {
            return None;
        }
        let e = (*cache.entries.get(i)?)?;
        (mask(k, e.prefix) == e.net).then_some(e.location)
    });
    if let Some(location) = hit {
        return location;
    }
    let location = db.lookup(addr);
    CACHE.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return;
        };
        if !std::ptr::eq(cache.db.as_ptr(), db) {
            return;
        }
        let prefix = family_bits.saturating_add(location.prefix_len).min(128);
        if let Some(e) = cache.entries.get_mut(i) {
            *e = Some(Entry {
                net: mask(k, prefix),
                prefix,
                location,
            });
        }
    });
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(file: &str) -> Arc<GeoDb> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/geoip")
            .join(file);
        Arc::new(GeoDb::open(&path).unwrap())
    }

    fn db() -> Arc<GeoDb> {
        open("GeoIP2-City-Test.mmdb")
    }

    #[test]
    fn cached_answers_equal_direct_lookups() {
        let db = db();
        bind(&db);
        // Found networks of several lengths, addresses in and next to them, not-found space,
        // IPv6; each asked twice so the second answer comes from the cache.
        let addrs = [
            "2.2.3.1",
            "2.2.3.200",
            "2.2.4.1",
            "81.2.69.142",
            "81.2.69.143",
            "81.2.69.144",
            "81.2.69.159",
            "81.2.69.160",
            "89.160.20.112",
            "89.160.20.130",
            "214.0.0.1",
            "214.0.1.1",
            "127.0.0.1",
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "2001:218::1",
            "2001:220::1",
            "2a02:d3c0::1",
            "::1",
        ];
        for round in 0..2 {
            for a in addrs {
                let ip: IpAddr = a.parse().unwrap();
                assert_eq!(lookup(&db, ip), db.lookup(ip), "{a}, round {round}");
            }
        }
    }

    #[test]
    fn a_new_database_is_not_answered_from_the_old_ones_entries() {
        let first = db();
        bind(&first);
        let ip: IpAddr = "2.2.3.1".parse().unwrap();
        assert!(lookup(&first, ip).found);
        // Another database (2.2.3.0/24 is City-only), not bound: bypasses the cache even
        // though an entry for the address exists.
        let other = open("GeoLite2-Country-Test.mmdb");
        assert!(!lookup(&other, ip).found);
        bind(&other);
        assert!(!lookup(&other, ip).found);
        bind(&first);
        assert!(lookup(&first, ip).found);
    }
}
