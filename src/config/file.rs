//! The TOML shapes of a zone file, exactly as an operator writes them.
//!
//! Nothing here validates beyond what serde checks (types, unknown keys): `model.rs` owns the
//! meaning of each value and `load.rs` turns one into the other.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;

/// One zone file: `zones/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneFile {
    /// The zone's apex, an absolute name (`gslb.example.com.`).
    pub origin: String,
    /// TTL of records that do not give their own.
    pub ttl: Option<u32>,
    /// Apex NS names.
    #[serde(default)]
    pub ns: Vec<String>,
    /// An RFC 1035 master file with more records, relative to this file.
    pub records_file: Option<String>,
    /// Start of authority.
    pub soa: Option<SoaFile>,
    /// Static records.
    #[serde(default)]
    pub record: Vec<RecordFile>,
    /// Regions where load balancers live, in file order (orders fall back to it).
    #[serde(default)]
    pub region: IndexMap<String, RegionFile>,
    /// Traffic-managed names, in file order.
    #[serde(default)]
    pub service: IndexMap<String, ServiceFile>,
    /// Health checks that services name.
    #[serde(default)]
    pub check: BTreeMap<String, CheckFile>,
    /// DNSSEC online signing; absent = the zone is not signed.
    pub dnssec: Option<DnssecFile>,
}

/// The `[dnssec]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecFile {
    /// The keys: one CSK, or KSK(s) and ZSK(s).
    #[serde(default)]
    pub key: Vec<DnssecKeyFile>,
    /// Signature lifetime from a window's start: seconds or `"14d"`.
    pub signature_validity: Option<DurationFile>,
    /// Re-sign when less than this remains: seconds or `"7d"`.
    pub signature_refresh: Option<DurationFile>,
    /// How far in the past inception lies: seconds or `"1h"`.
    pub inception_offset: Option<DurationFile>,
    /// TTL of DNSKEY, CDS and CDNSKEY.
    pub dnskey_ttl: Option<u32>,
    /// Slots of each signature cache (steered answers; per-name proofs).
    pub cache_size: Option<usize>,
}

/// One `[[dnssec.key]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecKeyFile {
    /// `K<zone>+<alg>+<tag>` (with or without `.key`/`.private`), relative to the zone file.
    pub file: String,
    /// When the DNSKEY is published (default: the `.private` file's, else always).
    pub publish: Option<TimeFile>,
    /// When the key starts signing.
    pub activate: Option<TimeFile>,
    /// When the key stops signing (stays published).
    pub retire: Option<TimeFile>,
    /// When the DNSKEY is withdrawn.
    pub remove: Option<TimeFile>,
}

/// A point in time: a TOML date-time, a string (RFC 3339 UTC or `YYYYMMDDHHMMSS`), or
/// seconds since the epoch.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TimeFile {
    /// Seconds since the epoch.
    Seconds(u64),
    /// Text.
    Text(String),
    /// A TOML date-time (`2026-01-02T03:04:05Z`, unquoted).
    Date(toml::value::Datetime),
}

/// A `[check.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    /// `http`, `https`, `tcp` or `exec`.
    #[serde(rename = "type")]
    pub kind: String,
    /// exec only: the program (an absolute path) and its arguments; no shell.
    pub command: Option<Vec<String>>,
    /// Port; default 80 (http), 443 (https); required for tcp.
    pub port: Option<u16>,
    /// Request path.
    pub path: Option<String>,
    /// Host header and TLS server name.
    pub host: Option<String>,
    /// Statuses that pass: numbers or `"200-399"` ranges.
    pub expect_status: Option<Vec<StatusFile>>,
    /// Substring the body must contain.
    pub expect_body: Option<String>,
    /// RFC 6901 JSON pointer -> the value the JSON body must have there.
    #[serde(default)]
    pub expect_json: BTreeMap<String, JsonValueFile>,
    /// A response slower than this fails the check.
    pub max_latency: Option<DurationFile>,
    /// RFC 6901 JSON pointer to the endpoint's load (0.0-1.0) in the body.
    pub load_pointer: Option<String>,
    /// Load above which the endpoint's weight starts falling.
    pub shed_above: Option<f64>,
    /// Load at which the endpoint's weight reaches zero.
    pub shed_at: Option<f64>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Verify the server certificate.
    pub tls_verify: Option<bool>,
    /// CA bundle (PEM) to verify against, relative to the zone file.
    pub ca_file: Option<String>,
    /// Time between checks: seconds, or `"500ms"`, `"5s"`, `"1m"`.
    pub interval: Option<DurationFile>,
    /// Time one check may take.
    pub timeout: Option<DurationFile>,
    /// Consecutive successes to go up.
    pub rise: Option<u32>,
    /// Consecutive failures to go down.
    pub fall: Option<u32>,
}

/// One `expect_status` entry.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusFile {
    /// A single status.
    Code(u16),
    /// `"200-399"`.
    Range(String),
}

/// An `expect_json` value: a string, a number or a boolean.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum JsonValueFile {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Text(String),
}

/// A duration: whole seconds, or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationFile {
    /// Seconds.
    Seconds(u64),
    /// `"500ms"`, `"5s"`, `"1m"`.
    Text(String),
}

/// The `[soa]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaFile {
    /// Primary nameserver name.
    pub mname: String,
    /// Responsible mailbox, in domain-name form (`hostmaster.example.com.`).
    pub rname: String,
    /// Zone serial.
    pub serial: u32,
    /// Secondary refresh interval, seconds.
    pub refresh: Option<u32>,
    /// Secondary retry interval, seconds.
    pub retry: Option<u32>,
    /// Secondary expiry, seconds.
    pub expire: Option<u32>,
    /// Negative-caching TTL, seconds (RFC 2308).
    pub minimum: Option<u32>,
}

/// One `[[record]]` table: an RRset of static data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFile {
    /// Owner, relative to the origin, `@` for the apex, or absolute with a trailing dot.
    pub name: String,
    /// Record type mnemonic (`A`, `TXT`, ...).
    #[serde(rename = "type")]
    pub rtype: String,
    /// TTL; the zone's `ttl` when absent.
    pub ttl: Option<u32>,
    /// RDATA strings in master-file presentation form, one record each.
    pub data: Vec<String>,
}

/// A `[region.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionFile {
    /// `[latitude, longitude]` of the region's data centre.
    pub location: Option<[f64; 2]>,
    /// Countries (ISO 3166 alpha-2) this region is home for.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Continent codes this region is home for.
    #[serde(default)]
    pub continents: Vec<String>,
}

/// A `[service.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// TTL of answers.
    pub ttl: Option<u32>,
    /// `geo`, `nearest`, `failover` or `weighted`.
    pub policy: Option<String>,
    /// Maximum addresses in one answer.
    pub answers: Option<u32>,
    /// Name of a `[check.NAME]` table.
    pub check: Option<String>,
    /// What to answer when nothing is healthy: `all`, `none`, or a list of addresses.
    pub fallback: Option<FallbackFile>,
    /// Region order for the `failover` policy.
    #[serde(default)]
    pub failover: Vec<String>,
    /// Maps for the `geo` policy.
    pub geo: Option<GeoFile>,
    /// Ramp a returning endpoint or region from 10 % to its full share over this time.
    pub slow_start: Option<DurationFile>,
    /// Answer with `min_ttl` while an endpoint the answer depends on is in a transition.
    pub dynamic_ttl: Option<bool>,
    /// TTL of answers during transitions and of fallback answers (`dynamic_ttl`).
    pub min_ttl: Option<u32>,
    /// The load balancers.
    #[serde(default)]
    pub endpoint: Vec<EndpointFile>,
}

/// `fallback = "all" | "none" | ["192.0.2.1", ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FallbackFile {
    /// `all` or `none`.
    Mode(String),
    /// Fixed addresses.
    Addresses(Vec<String>),
}

/// `[service.NAME.geo]` and its sub-tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoFile {
    /// Region order for clients that no other entry matches.
    #[serde(default)]
    pub default: Vec<String>,
    /// Country code -> region order.
    #[serde(default)]
    pub country: BTreeMap<String, Vec<String>>,
    /// Continent code -> region order.
    #[serde(default)]
    pub continent: BTreeMap<String, Vec<String>>,
    /// CIDR -> region order; beats GeoIP.
    #[serde(default)]
    pub subnet: BTreeMap<String, Vec<String>>,
}

/// One `[[service.NAME.endpoint]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointFile {
    /// Region the endpoint lives in.
    pub region: String,
    /// Address returned in answers.
    pub address: String,
    /// Relative weight; 0 makes it a standby.
    pub weight: Option<u32>,
    /// Address to health-check instead of `address`.
    pub probe_address: Option<String>,
    /// Port to health-check instead of the check's port.
    pub probe_port: Option<u16>,
}
