//! Validated zones: what `load.rs` produces and `routing::compile` consumes.
//!
//! A value of these types has passed every check: names are inside their zone, RDATA parsed,
//! CNAMEs stand alone. Nothing here touches the file system.

use std::path::PathBuf;

use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Default TTL of records that do not give one (`ttl` in a zone file).
pub const DEFAULT_TTL: u32 = 3600;
/// Default SOA refresh, seconds.
pub const DEFAULT_REFRESH: u32 = 7200;
/// Default SOA retry, seconds.
pub const DEFAULT_RETRY: u32 = 3600;
/// Default SOA expire, seconds.
pub const DEFAULT_EXPIRE: u32 = 1_209_600;
/// Default SOA minimum (negative-caching TTL, RFC 2308), seconds.
pub const DEFAULT_MINIMUM: u32 = 300;
/// Largest TTL a record may have (RFC 2181 §8).
pub const MAX_TTL: u32 = i32::MAX as u32;

/// One authoritative zone, validated.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The apex, absolute.
    pub origin: Name,
    /// The TOML file it came from (for messages and `/health`).
    pub file: PathBuf,
    /// The SOA record (owner = origin).
    pub soa: Record,
    /// Every other static record, apex NS included. Grouped into RRsets by the compiler.
    pub records: Vec<Record>,
}

impl Zone {
    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(soa) => soa.serial,
            _ => 0,
        }
    }

    /// Number of static records, the SOA included.
    pub fn record_count(&self) -> usize {
        self.records.len() + 1
    }

    /// Records of one type at one owner (compared case-insensitively).
    pub fn records_of<'a>(
        &'a self,
        owner: &'a Name,
        rtype: RecordType,
    ) -> impl Iterator<Item = &'a Record> + 'a {
        self.records
            .iter()
            .filter(move |r| r.record_type() == rtype && r.name == *owner)
    }
}
