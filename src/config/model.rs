//! Validated zones: what `load.rs` produces and `routing::compile` consumes.
//!
//! A value of these types has passed every check: names are inside their zone, RDATA parsed,
//! CNAMEs stand alone. Nothing here touches the file system.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;

use crate::geo::{Continent, Coords, CountryCode};

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

/// Largest DNS message: the 16-bit length of RFC 1035 §4.2.2 framing over TCP.
pub const MAX_MESSAGE: usize = 65_535;
/// Most bytes one RRset may take in wire form, owners uncompressed: what is left of a
/// [`MAX_MESSAGE`] after the header (12), the longest question (a 255-byte name, type and
/// class: 259) and an OPT record echoing the longest ECS option (11 + 8 + 16 = 35). An RRset
/// over this could be neither answered whole over TCP nor sent in any AXFR message
/// (RFC 2181 §9: an RRset is never split in an answer), so the loader rejects it.
pub const MAX_RRSET_WIRE: usize = MAX_MESSAGE - 12 - 259 - 35;

/// One authoritative zone, validated.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The apex, absolute.
    pub origin: Name,
    /// The TOML file it came from (for messages and `/health`).
    pub file: PathBuf,
    /// The RFC 1035 master file named by `records_file`, resolved (the config watcher
    /// watches it too).
    pub records_file: Option<PathBuf>,
    /// The SOA record (owner = origin).
    pub soa: Record,
    /// Every other static record, apex NS included, in wire form (`wire`: a `Record` is 272
    /// bytes, a small zone's record in wire form about 40). Grouped into RRsets by the compiler.
    pub records: super::wire::RecordStore,
    /// Regions, in file order (services refer to them by index).
    pub regions: Vec<Region>,
    /// Traffic-managed names, in file order. Shared: a reload that parses the file again
    /// keeps the serving version of every service that did not change (`load::reload_zone`),
    /// and the compiler reuses what it compiled from it.
    pub services: Vec<Arc<Service>>,
    /// Health checks, by name.
    pub checks: Vec<super::check::Check>,
    /// Keys and signing policy when the zone is signed (`[dnssec]`).
    pub dnssec: Option<crate::dnssec::ZoneDnssec>,
    /// Hash of the zone file's bytes when they are all it was loaded from (no
    /// `records_file`, no `[dnssec]` keys): a reload reuses this version while the hash holds
    /// (`load::reload_zone`).
    pub fingerprint: Option<u64>,
    /// What the file system said about the zone file when it was read, once that is old
    /// enough to be trusted: a reload skips reading a file whose stamp is unchanged
    /// (`load::reload_zone`).
    pub stamp: StampCell,
}

/// A zone file's metadata as a reload compares it: device, inode, size, and the modification
/// and status-change times (nanoseconds). Any write, truncation, rename over the file or
/// `touch` changes at least one of them; restoring an old mtime (`touch -d`, `rsync -t`)
/// still moves the ctime, which no user can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime: i128,
    /// Status-change time, ns since the epoch.
    pub ctime: i128,
}

/// The [`FileStamp`] of a loaded zone, set after loading: the zone is shared (`Arc`) between
/// tables, and a reload that finds the file unchanged by content but newly settled records
/// the stamp on the serving version. Only the reload path locks it, never a query.
#[derive(Default)]
pub struct StampCell(std::sync::Mutex<Option<FileStamp>>);

impl StampCell {
    /// A cell holding `stamp`.
    pub fn new(stamp: Option<FileStamp>) -> Self {
        Self(std::sync::Mutex::new(stamp))
    }

    /// The stamp, if one was recorded.
    pub fn get(&self) -> Option<FileStamp> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `stamp` (or forgets it, with `None`).
    pub fn set(&self, stamp: Option<FileStamp>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
    }
}

impl Clone for StampCell {
    fn clone(&self) -> Self {
        Self::new(self.get())
    }
}

impl std::fmt::Debug for StampCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
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
    ) -> impl Iterator<Item = Record> + 'a {
        self.records
            .iter()
            .filter(move |r| r.record_type() == rtype && r.name == *owner)
    }
}

/// Default TTL of a service's answers, seconds: short, so failover reaches clients quickly.
pub const DEFAULT_SERVICE_TTL: u32 = 30;
/// Default number of addresses in one service answer.
pub const DEFAULT_ANSWERS: usize = 1;
/// Largest `answers` a service may ask for.
pub const MAX_ANSWERS: usize = 16;
/// Default endpoint weight.
pub const DEFAULT_WEIGHT: u32 = 100;
/// Largest endpoint weight.
pub const MAX_WEIGHT: u32 = 1000;

/// A region where load balancers live.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// Its name (`eu-west`).
    pub name: String,
    /// Where its data centre is, for the `nearest` policy.
    pub location: Option<Coords>,
    /// Countries it is home for.
    pub countries: Vec<CountryCode>,
    /// Continents it is home for.
    pub continents: Vec<Continent>,
}

/// How a service orders regions for a client.
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// By the client's subnet, country or continent; `default` otherwise.
    Geo(GeoMap),
    /// By great-circle distance from the client.
    Nearest,
    /// A fixed order (active-passive).
    Failover(Vec<usize>),
    /// All regions together, weighted (active-active).
    Weighted,
}

impl Policy {
    /// The name used in zone files.
    pub fn as_str(&self) -> &'static str {
        match self {
            Policy::Geo(_) => "geo",
            Policy::Nearest => "nearest",
            Policy::Failover(_) => "failover",
            Policy::Weighted => "weighted",
        }
    }
}

/// The tables of the `geo` policy; region lists are indices into the zone's regions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GeoMap {
    /// For clients nothing else matches.
    pub default: Vec<usize>,
    /// By country.
    pub country: Vec<(CountryCode, Vec<usize>)>,
    /// By continent.
    pub continent: Vec<(Continent, Vec<usize>)>,
    /// By subnet; beats GeoIP.
    pub subnet: Vec<(IpNet, Vec<usize>)>,
}

/// What a service answers when none of its endpoints is healthy.
#[derive(Clone, Debug, PartialEq)]
pub enum Fallback {
    /// Every endpoint of the best region (fail open).
    All,
    /// No address (NODATA).
    None,
    /// These addresses.
    Addresses(Vec<IpAddr>),
}

/// A load balancer address of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// Index into the zone's regions.
    pub region: usize,
    /// Address answered.
    pub address: IpAddr,
    /// Relative weight, 0 = standby.
    pub weight: u32,
    /// Address the health check connects to (defaults to `address`).
    pub probe_address: Option<IpAddr>,
    /// Port the health check connects to (defaults to the check's).
    pub probe_port: Option<u16>,
}

/// A traffic-managed name.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// The key in the zone file (`www`).
    pub key: String,
    /// Absolute owner name.
    pub name: Name,
    /// TTL of answers.
    pub ttl: u32,
    /// Region ordering.
    pub policy: Policy,
    /// Most addresses per answer.
    pub answers: usize,
    /// Name of the health check.
    pub check: Option<String>,
    /// When nothing is healthy.
    pub fallback: Fallback,
    /// The endpoints, in file order.
    pub endpoints: Vec<Endpoint>,
    /// Slow start, dynamic TTL.
    pub health: ServiceHealth,
}

/// Default TTL of answers during transitions and of fallback answers (`min_ttl`), seconds.
pub const DEFAULT_MIN_TTL: u32 = 5;
/// Longest `slow_start` a service may have.
pub const MAX_SLOW_START: std::time::Duration = std::time::Duration::from_secs(3600);

/// How a service treats endpoints that change state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceHealth {
    /// Ramp a returning endpoint or region from 10 % to its full share over this time.
    pub slow_start: Option<std::time::Duration>,
    /// Answer with `min_ttl` while any endpoint is in a transition (rise/fall counting,
    /// slow start, shedding), and always for fallback answers.
    pub dynamic_ttl: bool,
    /// The short TTL of `dynamic_ttl`, at most the service's `ttl`.
    pub min_ttl: u32,
}
