//! Reads zone files from disk and validates them into [`Zone`]s.
//!
//! Every error names the file and the key (or line) at fault. Loading never panics on what a
//! file contains; a bad file is an `Err`, and the caller decides whether that stops start-up
//! (it does) or only that zone's reload (the previous version keeps serving).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hickory_proto::rr::rdata::{SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use indexmap::IndexMap;
use ipnet::IpNet;

use super::file::{FallbackFile, GeoFile, RecordFile, RegionFile, ServiceFile, SoaFile, ZoneFile};
use super::master::{self, Entry};
use super::model::{
    DEFAULT_ANSWERS, DEFAULT_EXPIRE, DEFAULT_MINIMUM, DEFAULT_REFRESH, DEFAULT_RETRY,
    DEFAULT_SERVICE_TTL, DEFAULT_TTL, DEFAULT_WEIGHT, Endpoint, Fallback, GeoMap, MAX_ANSWERS,
    MAX_RRSET_WIRE, MAX_TTL, MAX_WEIGHT, Policy, Region, Service, Zone,
};
use super::{clip, clip_msg};
use crate::geo::{Continent, Coords, CountryCode};

/// Why a zone file (or the zones directory) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// What we tried to read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse, or has unknown keys or wrong types. toml's message quotes
    /// the line at fault; each of its lines is cut short.
    #[error("{}: {}", path.display(), clip_msg(source))]
    Syntax {
        /// The zone file.
        path: PathBuf,
        /// What toml said, with line and column.
        source: toml::de::Error,
    },
    /// A value is well-formed TOML but wrong.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The zone file.
        path: PathBuf,
        /// The key at fault, e.g. `record[2].data[0]`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The RFC 1035 master file named by `records_file` does not parse.
    #[error("{}: {message}", path.display())]
    MasterFile {
        /// The master file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// An entry of the RFC 1035 master file named by `records_file` is wrong.
    #[error("{}:{line}: {message}", path.display())]
    MasterLine {
        /// The master file (or a file it `$INCLUDE`s).
        path: PathBuf,
        /// The line the entry starts on, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Two files declare the same origin.
    #[error("{}: origin {origin} is already served by {}", path.display(), other.display())]
    DuplicateOrigin {
        /// The second file.
        path: PathBuf,
        /// The origin both declare.
        origin: String,
        /// The first file.
        other: PathBuf,
    },
}

/// The `*.toml` files in `dir`, sorted by name so that loading is deterministic.
pub fn zone_files(dir: &Path) -> Result<Vec<PathBuf>, ZoneError> {
    let read_err = |source| ZoneError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every zone in `dir`, failing on the first bad file (start-up and `check-config`).
pub fn load_dir(dir: &Path) -> Result<Vec<Zone>, ZoneError> {
    let mut zones: Vec<Zone> = Vec::new();
    for path in zone_files(dir)? {
        let zone = load_zone(&path)?;
        check_unique_origin(&zones, &zone)?;
        zones.push(zone);
    }
    Ok(zones)
}

/// Fails when `zone`'s origin is already one of `zones`'.
pub fn check_unique_origin<'a>(
    zones: impl IntoIterator<Item = &'a Zone>,
    zone: &Zone,
) -> Result<(), ZoneError> {
    match zones.into_iter().find(|z| z.origin == zone.origin) {
        Some(other) => Err(ZoneError::DuplicateOrigin {
            path: zone.file.clone(),
            origin: zone.origin.to_string(),
            other: other.file.clone(),
        }),
        None => Ok(()),
    }
}

/// Reads and validates one zone file.
pub fn load_zone(path: &Path) -> Result<Zone, ZoneError> {
    let text = fs::read_to_string(path).map_err(|source| ZoneError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: ZoneFile = toml::from_str(&text).map_err(|source| ZoneError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    let zone = ZoneBuilder::new(path).build(file)?;
    for w in super::lint(std::slice::from_ref(&zone)) {
        tracing::warn!(
            file = %path.display(),
            owner = %w.owner,
            rtype = %w.rtype,
            target = %w.target,
            "record target is a CNAME (RFC 2181 §10.3)"
        );
    }
    Ok(zone)
}

/// Where a record was written, for messages that point at it.
#[derive(Clone, Debug)]
enum At {
    /// A key of the zone file (`ns[0]`).
    Key(String),
    /// Value `value` of the `[[record]]` table number `index`.
    Value { index: usize, value: usize },
    /// A line of the master file (or of a file it includes).
    Line { path: PathBuf, line: usize },
}

impl At {
    /// The whole entry: for a `[[record]]` value, its table.
    fn entry(&self) -> String {
        match self {
            At::Value { index, .. } => format!("record[{index}]"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Key(key) => f.write_str(key),
            At::Value { index, value } => write!(f, "record[{index}].data[{value}]"),
            At::Line { path, line } => {
                let file = path.file_name().unwrap_or(path.as_os_str());
                write!(f, "{}:{line}", file.to_string_lossy())
            }
        }
    }
}

/// One record as written (before the master-file parser merges or folds anything): owner
/// (lowercased), type and place.
#[derive(Clone, Debug)]
struct Source {
    owner: Name,
    rtype: RecordType,
    at: At,
}

/// Validation state for one file: its path, which every error names.
struct ZoneBuilder<'a> {
    path: &'a Path,
}

impl<'a> ZoneBuilder<'a> {
    fn new(path: &'a Path) -> Self {
        Self { path }
    }

    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ZoneError {
        ZoneError::Invalid {
            path: self.path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An error at `at`: a key of the zone file, or a line of the master file. With
    /// `whole_entry`, a `[[record]]` value is named by its table.
    fn error_at(&self, at: &At, whole_entry: bool, message: String) -> ZoneError {
        match at {
            At::Line { path, line } => ZoneError::MasterLine {
                path: path.clone(),
                line: *line,
                message,
            },
            at if whole_entry => self.invalid(at.entry(), message),
            at => self.invalid(at.to_string(), message),
        }
    }

    fn build(&self, file: ZoneFile) -> Result<Zone, ZoneError> {
        let origin = self.origin(&file.origin)?;
        let default_ttl = self.ttl("ttl", file.ttl.unwrap_or(DEFAULT_TTL))?;

        let mut soa = None;
        let mut records = Vec::new();
        let mut sources = Vec::new();
        if let Some(rel) = &file.records_file {
            let (parsed, entries) = self.master_file(rel, &origin)?;
            sources.extend(entries.into_iter().map(|e| Source {
                owner: e.owner,
                rtype: e.rtype,
                at: At::Line {
                    path: e.path,
                    line: e.line,
                },
            }));
            for record in parsed {
                if record.record_type() == RecordType::SOA {
                    if record.name != origin {
                        return Err(self.invalid(
                            "records_file",
                            format!("SOA owner {} is not the origin {origin}", record.name),
                        ));
                    }
                    soa = Some(record);
                } else {
                    records.push(record);
                }
            }
        }

        if let Some(soa_file) = &file.soa {
            if soa.is_some() {
                return Err(self.invalid("soa", "the SOA is given both here and in records_file"));
            }
            soa = Some(self.soa(soa_file, &origin, default_ttl)?);
        }
        let soa = soa.ok_or_else(|| {
            self.invalid(
                "soa",
                "missing: give a [soa] table or an SOA in records_file",
            )
        })?;

        for (i, ns) in file.ns.iter().enumerate() {
            let target = self.name(&format!("ns[{i}]"), ns, &origin)?;
            sources.push(Source {
                owner: origin.clone(),
                rtype: RecordType::NS,
                at: At::Key(format!("ns[{i}]")),
            });
            records.push(Record::from_rdata(
                origin.clone(),
                default_ttl,
                RData::NS(hickory_proto::rr::rdata::NS(target)),
            ));
        }

        for (i, record) in file.record.iter().enumerate() {
            let values = self.record(i, record, &origin, default_ttl)?;
            sources.extend(values.iter().enumerate().map(|(j, r)| Source {
                owner: r.name.to_lowercase(),
                rtype: r.record_type(),
                at: At::Value { index: i, value: j },
            }));
            records.extend(values);
        }

        let regions = self.regions(&file.region)?;
        let mut services = Vec::with_capacity(file.service.len());
        for (key, service) in &file.service {
            services.push(self.service(key, service, &origin, &regions, &file)?);
        }

        let base = self.path.parent().unwrap_or(Path::new("."));
        let mut checks = Vec::with_capacity(file.check.len());
        for (name, c) in &file.check {
            checks.push(
                super::check::check(name, c, base).map_err(|(key, msg)| self.invalid(key, msg))?,
            );
        }

        let zone = Zone {
            origin,
            file: self.path.to_path_buf(),
            records_file: file
                .records_file
                .as_ref()
                .map(|rel| self.path.parent().unwrap_or(Path::new(".")).join(rel)),
            soa,
            records,
            regions,
            services,
            checks,
        };
        self.check_records(&zone, &sources)?;
        self.check_services(&zone, &sources)?;
        Ok(zone)
    }

    fn regions(&self, regions: &IndexMap<String, RegionFile>) -> Result<Vec<Region>, ZoneError> {
        let mut out = Vec::with_capacity(regions.len());
        for (name, region) in regions {
            let key = format!("region.{name}");
            if !valid_region_name(name) {
                return Err(self.invalid(
                    &key,
                    "region names use letters, digits, `-` and `_` (at most 63)",
                ));
            }
            let location = match region.location {
                None => None,
                Some([lat, lon]) => Some(Coords::new(lat, lon).ok_or_else(|| {
                    self.invalid(
                        format!("{key}.location"),
                        format!("[{lat}, {lon}] is not a latitude in -90..90 and a longitude in -180..180"),
                    )
                })?),
            };
            let mut countries = Vec::new();
            for (i, code) in region.countries.iter().enumerate() {
                countries.push(self.country(&format!("{key}.countries[{i}]"), code)?);
            }
            let mut continents = Vec::new();
            for (i, code) in region.continents.iter().enumerate() {
                continents.push(self.continent(&format!("{key}.continents[{i}]"), code)?);
            }
            out.push(Region {
                name: name.clone(),
                location,
                countries,
                continents,
            });
        }
        Ok(out)
    }

    fn country(&self, key: &str, code: &str) -> Result<CountryCode, ZoneError> {
        if code.len() != 2 || code.bytes().any(|b| !b.is_ascii_uppercase()) {
            return Err(self.invalid(
                key,
                format!(
                    "`{}` is not an ISO 3166 alpha-2 country code (two capital letters)",
                    clip(code)
                ),
            ));
        }
        code.parse()
            .map_err(|_| self.invalid(key, format!("unknown country code `{}`", clip(code))))
    }

    fn continent(&self, key: &str, code: &str) -> Result<Continent, ZoneError> {
        Continent::from_code(code)
            .filter(|c| c.as_str() == code)
            .ok_or_else(|| {
                self.invalid(
                    key,
                    format!(
                        "unknown continent code `{}` (one of AF AN AS EU NA OC SA)",
                        clip(code)
                    ),
                )
            })
    }

    fn region_list(
        &self,
        key: &str,
        names: &[String],
        regions: &[Region],
    ) -> Result<Vec<usize>, ZoneError> {
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let idx = regions
                .iter()
                .position(|r| &r.name == name)
                .ok_or_else(|| {
                    self.invalid(
                        format!("{key}[{i}]"),
                        format!(
                            "unknown region `{}` (declare it as [region.{}])",
                            clip(name),
                            clip(name)
                        ),
                    )
                })?;
            if out.contains(&idx) {
                return Err(self.invalid(
                    format!("{key}[{i}]"),
                    format!("region `{}` is listed twice", clip(name)),
                ));
            }
            out.push(idx);
        }
        Ok(out)
    }

    fn service(
        &self,
        name: &str,
        service: &ServiceFile,
        origin: &Name,
        regions: &[Region],
        file: &ZoneFile,
    ) -> Result<Service, ZoneError> {
        let key = format!("service.{name}");
        if name.contains('*') {
            return Err(self.invalid(&key, "a service name cannot be a wildcard"));
        }
        let owner = self.owner(&key, name, origin)?;
        let ttl = self.ttl(
            &format!("{key}.ttl"),
            service.ttl.unwrap_or(DEFAULT_SERVICE_TTL),
        )?;
        let answers = match service.answers {
            None => DEFAULT_ANSWERS,
            Some(n) if (1..=MAX_ANSWERS as u32).contains(&n) => n as usize,
            Some(n) => {
                return Err(self.invalid(
                    format!("{key}.answers"),
                    format!("{n} is not between 1 and {MAX_ANSWERS}"),
                ));
            }
        };
        if let Some(check) = &service.check {
            if !file.check.contains_key(check) {
                return Err(self.invalid(
                    format!("{key}.check"),
                    format!(
                        "unknown check `{}` (declare it as [check.{}])",
                        clip(check),
                        clip(check)
                    ),
                ));
            }
        }
        let fallback = match &service.fallback {
            None => Fallback::All,
            Some(FallbackFile::Mode(mode)) if mode == "all" => Fallback::All,
            Some(FallbackFile::Mode(mode)) if mode == "none" => Fallback::None,
            Some(FallbackFile::Mode(mode)) => {
                return Err(self.invalid(
                    format!("{key}.fallback"),
                    format!(
                        "`{}` is not `all`, `none` or a list of addresses",
                        clip(mode)
                    ),
                ));
            }
            Some(FallbackFile::Addresses(list)) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, a) in list.iter().enumerate() {
                    out.push(a.parse().map_err(|_| {
                        self.invalid(
                            format!("{key}.fallback[{i}]"),
                            format!("`{}` is not an IP address", clip(a)),
                        )
                    })?);
                }
                if out.is_empty() {
                    return Err(self.invalid(
                        format!("{key}.fallback"),
                        "an empty list; use \"none\" to answer nothing",
                    ));
                }
                Fallback::Addresses(out)
            }
        };

        if service.endpoint.is_empty() {
            return Err(self.invalid(&key, "has no endpoints ([[service.NAME.endpoint]])"));
        }
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(service.endpoint.len());
        for (i, e) in service.endpoint.iter().enumerate() {
            let ekey = format!("{key}.endpoint[{i}]");
            let region = regions
                .iter()
                .position(|r| r.name == e.region)
                .ok_or_else(|| {
                    self.invalid(
                        format!("{ekey}.region"),
                        format!(
                            "unknown region `{}` (declare it as [region.{}])",
                            clip(&e.region),
                            clip(&e.region)
                        ),
                    )
                })?;
            let address: IpAddr = e.address.parse().map_err(|_| {
                self.invalid(
                    format!("{ekey}.address"),
                    format!("`{}` is not an IP address", clip(&e.address)),
                )
            })?;
            if endpoints.iter().any(|x| x.address == address) {
                return Err(self.invalid(
                    format!("{ekey}.address"),
                    format!("endpoint {address} is listed twice"),
                ));
            }
            let weight = e.weight.unwrap_or(DEFAULT_WEIGHT);
            if weight > MAX_WEIGHT {
                return Err(self.invalid(
                    format!("{ekey}.weight"),
                    format!("{weight} is not between 0 and {MAX_WEIGHT}"),
                ));
            }
            let probe_address = match &e.probe_address {
                None => None,
                Some(a) => Some(a.parse().map_err(|_| {
                    self.invalid(
                        format!("{ekey}.probe_address"),
                        format!("`{}` is not an IP address", clip(a)),
                    )
                })?),
            };
            endpoints.push(Endpoint {
                region,
                address,
                weight,
                probe_address,
                probe_port: e.probe_port,
            });
        }

        let policy_name = service
            .policy
            .as_deref()
            .unwrap_or(if service.geo.is_some() {
                "geo"
            } else if !service.failover.is_empty() {
                "failover"
            } else {
                "weighted"
            });
        if service.geo.is_some() && policy_name != "geo" {
            return Err(self.invalid(
                format!("{key}.geo"),
                format!("only used by policy = \"geo\", not \"{policy_name}\""),
            ));
        }
        if !service.failover.is_empty() && policy_name != "failover" {
            return Err(self.invalid(
                format!("{key}.failover"),
                format!("only used by policy = \"failover\", not \"{policy_name}\""),
            ));
        }
        let policy = match policy_name {
            "geo" => Policy::Geo(self.geo_map(&key, service.geo.as_ref(), regions)?),
            "nearest" => {
                for e in &endpoints {
                    if let Some(region) = regions.get(e.region).filter(|r| r.location.is_none()) {
                        return Err(self.invalid(
                            format!("region.{}.location", region.name),
                            format!("needed by service `{}` (policy = \"nearest\")", clip(name)),
                        ));
                    }
                }
                Policy::Nearest
            }
            "failover" => {
                if service.failover.is_empty() {
                    return Err(self.invalid(
                        format!("{key}.failover"),
                        "policy = \"failover\" needs an ordered region list",
                    ));
                }
                Policy::Failover(self.region_list(
                    &format!("{key}.failover"),
                    &service.failover,
                    regions,
                )?)
            }
            "weighted" => Policy::Weighted,
            other => {
                return Err(self.invalid(
                    format!("{key}.policy"),
                    format!(
                        "unknown policy `{}` (geo, nearest, failover or weighted)",
                        clip(other)
                    ),
                ));
            }
        };

        Ok(Service {
            key: name.to_string(),
            name: owner,
            ttl,
            policy,
            answers,
            check: service.check.clone(),
            fallback,
            endpoints,
        })
    }

    fn geo_map(
        &self,
        key: &str,
        geo: Option<&GeoFile>,
        regions: &[Region],
    ) -> Result<GeoMap, ZoneError> {
        let mut map = GeoMap::default();
        let Some(geo) = geo else {
            // No tables: the regions' home countries and continents, then file order.
            map.default = (0..regions.len()).collect();
            for (i, region) in regions.iter().enumerate() {
                for &c in &region.countries {
                    map.country.push((c, home_first(i, regions.len())));
                }
                for &c in &region.continents {
                    map.continent.push((c, home_first(i, regions.len())));
                }
            }
            return Ok(map);
        };
        map.default = if geo.default.is_empty() {
            (0..regions.len()).collect()
        } else {
            self.region_list(&format!("{key}.geo.default"), &geo.default, regions)?
        };
        for (code, list) in &geo.country {
            let k = format!("{key}.geo.country.{code}");
            let c = self.country(&k, code)?;
            map.country.push((c, self.region_list(&k, list, regions)?));
        }
        for (code, list) in &geo.continent {
            let k = format!("{key}.geo.continent.{code}");
            let c = self.continent(&k, code)?;
            map.continent
                .push((c, self.region_list(&k, list, regions)?));
        }
        for (cidr, list) in &geo.subnet {
            let k = format!("{key}.geo.subnet.\"{cidr}\"");
            let net: IpNet = cidr
                .parse()
                .map_err(|_| self.invalid(&k, format!("`{}` is not a CIDR prefix", clip(cidr))))?;
            if net.trunc() != net {
                return Err(self.invalid(
                    &k,
                    format!(
                        "`{}` has bits set past the prefix; did you mean {}?",
                        clip(cidr),
                        net.trunc()
                    ),
                ));
            }
            map.subnet.push((net, self.region_list(&k, list, regions)?));
        }
        Ok(map)
    }

    /// A service name must not also be a static record's owner, nor sit under a cut (there
    /// it could only ever be referred away: RFC 1034 §4.3.2 step 3b comes first).
    fn check_services(&self, zone: &Zone, sources: &[Source]) -> Result<(), ZoneError> {
        for service in &zone.services {
            if let Some(r) = zone.records.iter().find(|r| r.name == service.name) {
                return Err(self.invalid(
                    format!("service.{}", service.key),
                    format!(
                        "{} is also a static {} record; a name is either a service or static data",
                        service.name,
                        r.record_type()
                    ),
                ));
            }
            let cut = zone.records.iter().find(|r| {
                r.record_type() == RecordType::NS
                    && r.name != zone.origin
                    && r.name.zone_of(&service.name)
            });
            if let Some(cut) = cut {
                let at = sources
                    .iter()
                    .find(|s| s.rtype == RecordType::NS && s.owner == cut.name)
                    .map_or_else(|| "record".to_string(), |s| s.at.entry());
                return Err(self.invalid(
                    format!("service.{}", clip(&service.key)),
                    format!(
                        "{} is below the delegation {} (NS {at}); a service must be in the \
                         zone's own data, where it is answered rather than referred",
                        service.name,
                        cut.name.to_lowercase()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn origin(&self, text: &str) -> Result<Name, ZoneError> {
        if !text.ends_with('.') {
            return Err(self.invalid(
                "origin",
                format!("`{}` must be absolute (end with a dot)", clip(text)),
            ));
        }
        Name::from_ascii(text)
            .map(|n| n.to_lowercase())
            .map_err(|e| self.invalid("origin", format!("`{}`: {}", clip(text), clip_msg(&e))))
    }

    /// A name relative to the origin, `@`, or absolute; it must lie inside the zone.
    fn owner(&self, key: &str, text: &str, origin: &Name) -> Result<Name, ZoneError> {
        let name = self.name(key, text, origin)?;
        if !origin.zone_of(&name) {
            return Err(self.invalid(
                key,
                format!("`{}` is outside the zone {origin}", clip(text)),
            ));
        }
        Ok(name)
    }

    fn name(&self, key: &str, text: &str, origin: &Name) -> Result<Name, ZoneError> {
        if text.is_empty() {
            return Err(self.invalid(key, "empty name"));
        }
        if text == "@" {
            return Ok(origin.clone());
        }
        Name::parse(text, Some(origin))
            .map_err(|e| self.invalid(key, format!("`{}`: {}", clip(text), clip_msg(&e))))
    }

    fn ttl(&self, key: &str, ttl: u32) -> Result<u32, ZoneError> {
        if ttl > MAX_TTL {
            return Err(self.invalid(key, format!("{ttl} is above the maximum TTL {MAX_TTL}")));
        }
        Ok(ttl)
    }

    fn soa(&self, soa: &SoaFile, origin: &Name, ttl: u32) -> Result<Record, ZoneError> {
        let mname = self.name("soa.mname", &soa.mname, origin)?;
        let rname = self.name("soa.rname", &soa.rname, origin)?;
        let field = |key: &str, value: Option<u32>, default: u32| -> Result<i32, ZoneError> {
            let value = value.unwrap_or(default);
            i32::try_from(value)
                .map_err(|_| self.invalid(key, format!("{value} is above {}", i32::MAX)))
        };
        let refresh = field("soa.refresh", soa.refresh, DEFAULT_REFRESH)?;
        let retry = field("soa.retry", soa.retry, DEFAULT_RETRY)?;
        let expire = field("soa.expire", soa.expire, DEFAULT_EXPIRE)?;
        let minimum = self.ttl("soa.minimum", soa.minimum.unwrap_or(DEFAULT_MINIMUM))?;
        Ok(Record::from_rdata(
            origin.clone(),
            ttl,
            RData::SOA(SOA::new(
                mname, rname, soa.serial, refresh, retry, expire, minimum,
            )),
        ))
    }

    fn record(
        &self,
        index: usize,
        record: &RecordFile,
        origin: &Name,
        default_ttl: u32,
    ) -> Result<Vec<Record>, ZoneError> {
        let key = format!("record[{index}]");
        let owner = self.owner(&format!("{key}.name"), &record.name, origin)?;
        let rtype: RecordType = record.rtype.to_ascii_uppercase().parse().map_err(|_| {
            self.invalid(
                format!("{key}.type"),
                format!("unknown record type `{}`", clip(&record.rtype)),
            )
        })?;
        if !SUPPORTED_TYPES.contains(&rtype) {
            return Err(self.invalid(
                format!("{key}.type"),
                format!(
                    "type {rtype} is not supported in [[record]] (supported: {})",
                    supported_list()
                ),
            ));
        }
        if rtype == RecordType::NS && owner == *origin {
            return Err(self.invalid(
                format!("{key}.type"),
                "apex NS records belong in the zone's `ns` list",
            ));
        }
        let ttl = self.ttl(&format!("{key}.ttl"), record.ttl.unwrap_or(default_ttl))?;
        if record.data.is_empty() {
            return Err(self.invalid(format!("{key}.data"), "needs at least one value"));
        }
        let mut out = Vec::with_capacity(record.data.len());
        for (j, text) in record.data.iter().enumerate() {
            let data_key = format!("{key}.data[{j}]");
            let rdata = parse_rdata(rtype, text, origin).map_err(|e| {
                self.invalid(
                    &data_key,
                    format!("bad {rtype} data `{}`: {}", clip(text), clip_msg(&e)),
                )
            })?;
            let mut rec = Record::from_rdata(owner.clone(), ttl, rdata);
            rec.dns_class = DNSClass::IN;
            check_wire_round_trip(&rec).map_err(|e| {
                self.invalid(
                    &data_key,
                    format!("bad {rtype} data `{}`: {}", clip(text), clip_msg(&e)),
                )
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// The records of the master file `rel`, and where each entry of it is (the parser
    /// keeps no lines, and folds a second CNAME into the first).
    fn master_file(
        &self,
        rel: &str,
        origin: &Name,
    ) -> Result<(Vec<Record>, Vec<Entry>), ZoneError> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        let path = base.join(rel);
        let text = fs::read_to_string(&path).map_err(|source| ZoneError::Read {
            path: path.clone(),
            source,
        })?;
        let (_, sets) = Parser::new(text.as_str(), Some(path.clone()), Some(origin.clone()))
            .parse()
            .map_err(|e| ZoneError::MasterFile {
                path: path.clone(),
                message: clip_msg(&e),
            })?;
        let entries = master::scan(&path, &text, origin).map_err(|(path, line, message)| {
            ZoneError::MasterLine {
                path,
                line,
                message,
            }
        })?;
        // Meridian answers class IN only; a CH record would be served as IN (and the parser
        // gives every later record of the file the same class).
        if let Some((e, class)) = entries
            .iter()
            .find_map(|e| Some((e, e.class.filter(|c| *c != DNSClass::IN)?)))
        {
            return Err(ZoneError::MasterLine {
                path: e.path.clone(),
                line: e.line,
                message: format!("class {class}: only class IN is served"),
            });
        }
        let mut records = Vec::new();
        for set in sets.values() {
            for record in set.records_without_rrsigs() {
                if record.dns_class != DNSClass::IN {
                    return Err(ZoneError::MasterFile {
                        path: path.clone(),
                        message: format!(
                            "{} {}: class {}: only class IN is served",
                            record.name,
                            record.record_type(),
                            record.dns_class
                        ),
                    });
                }
                if !origin.zone_of(&record.name) {
                    return Err(ZoneError::MasterFile {
                        path: path.clone(),
                        message: format!("{} is outside the zone {origin}", record.name),
                    });
                }
                check_wire_round_trip(record).map_err(|e| ZoneError::MasterFile {
                    path: path.clone(),
                    message: format!("{} {}: {}", record.name, record.record_type(), clip(&e)),
                })?;
                records.push(record.clone());
            }
        }
        Ok((records, entries))
    }

    /// Every RRset fits one message with any question and OPT (RFC 2181 §9: an RRset is
    /// never split in an answer; a larger one could be served to nobody, nor transferred).
    fn check_rrset_sizes(&self, zone: &Zone, sources: &[Source]) -> Result<(), ZoneError> {
        let mut sizes: BTreeMap<(Name, RecordType), usize> = BTreeMap::new();
        for r in &zone.records {
            *sizes
                .entry((r.name.to_lowercase(), r.record_type()))
                .or_default() += record_wire_len(r);
        }
        let Some(((owner, rtype), size)) =
            sizes.into_iter().find(|(_, size)| *size > MAX_RRSET_WIRE)
        else {
            return Ok(());
        };
        let at = sources
            .iter()
            .find(|s| s.owner == owner && s.rtype == rtype)
            .map_or_else(|| At::Key("record".into()), |s| s.at.clone());
        Err(self.error_at(
            &at,
            true,
            format!(
                "{owner} {rtype} is {size} bytes in wire form; an RRset must fit one DNS \
                 message (at most {MAX_RRSET_WIRE} bytes)"
            ),
        ))
    }

    /// RFC 1034 §3.6.2: a CNAME stands alone. Names where both are, and errs at the other data.
    fn cname_and_other_data(&self, owner: &Name, sources: &[Source]) -> ZoneError {
        let at_owner = || sources.iter().filter(|s| s.owner == *owner);
        let cname = at_owner().find(|s| s.rtype == RecordType::CNAME);
        let other = at_owner().find(|s| s.rtype != RecordType::CNAME);
        match (cname, other) {
            (Some(cname), Some(other)) => self.error_at(
                &other.at,
                false,
                format!(
                    "{owner} has a CNAME (at {}) and other data ({} at {}); a CNAME stands \
                     alone (RFC 1034 §3.6.2)",
                    cname.at, other.rtype, other.at
                ),
            ),
            _ => self.invalid(
                "record",
                format!("{owner} has a CNAME and other data (RFC 1034 §3.6.2)"),
            ),
        }
    }

    /// Whole-zone rules: apex NS present, one CNAME at a name and alone there, one TTL per
    /// RRset, every RRset small enough for one message.
    fn check_records(&self, zone: &Zone, sources: &[Source]) -> Result<(), ZoneError> {
        if !zone
            .records
            .iter()
            .any(|r| r.record_type() == RecordType::NS && r.name == zone.origin)
        {
            return Err(self.invalid("ns", "the zone has no apex NS records"));
        }
        // Counted as written: the master-file parser keeps only the last CNAME at a name.
        let mut cnames: BTreeMap<&Name, &At> = BTreeMap::new();
        for s in sources.iter().filter(|s| s.rtype == RecordType::CNAME) {
            if let Some(first) = cnames.insert(&s.owner, &s.at) {
                return Err(self.error_at(
                    &s.at,
                    false,
                    format!(
                        "{} has a second CNAME (the first is at {first}); a name has one CNAME \
                         (RFC 1034 §3.6.2, RFC 2181 §10.1)",
                        s.owner
                    ),
                ));
            }
        }
        self.check_rrset_sizes(zone, sources)?;
        // Per name, how many records; per RRset, its first TTL (one pass: zones can be big).
        let mut per_name: BTreeMap<Name, usize> = BTreeMap::new();
        let mut first_ttl: BTreeMap<(Name, RecordType), u32> = BTreeMap::new();
        for record in &zone.records {
            let owner = record.name.to_lowercase();
            *per_name.entry(owner.clone()).or_default() += 1;
            first_ttl
                .entry((owner, record.record_type()))
                .or_insert(record.ttl);
        }
        for record in &zone.records {
            let rtype = record.record_type();
            let owner = record.name.to_lowercase();
            if rtype == RecordType::CNAME {
                if owner == zone.origin {
                    return Err(self.invalid("record", "a CNAME cannot stand at the zone apex"));
                }
                if per_name.get(&owner).is_some_and(|&n| n > 1) {
                    return Err(self.cname_and_other_data(&owner, sources));
                }
            }
            if let Some(&first) = first_ttl.get(&(owner.clone(), rtype)) {
                if first != record.ttl {
                    return Err(self.invalid(
                        "record",
                        format!(
                            "{owner} {rtype} has records with TTLs {first} and {}; an RRset has one TTL (RFC 2181 §5.2)",
                            record.ttl
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Bytes of `name` in uncompressed wire form.
fn name_wire_len(name: &Name) -> usize {
    name.iter().map(|label| label.len() + 1).sum::<usize>() + 1
}

/// Bytes of a record in a message, owner uncompressed: owner, type, class, TTL, RDLENGTH,
/// RDATA (its names uncompressed, as the routing table stores them).
fn record_wire_len(record: &Record) -> usize {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
    let mut rdata = Vec::new();
    let mut enc = BinEncoder::new(&mut rdata);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    // Every record passed the wire round trip already; a failure here counts as nothing.
    let _ = record.data.emit(&mut enc);
    name_wire_len(&record.name) + 10 + rdata.len()
}

/// `home` first, then every other region in file order.
fn home_first(home: usize, count: usize) -> Vec<usize> {
    std::iter::once(home)
        .chain((0..count).filter(|&i| i != home))
        .collect()
}

fn valid_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Types that `[[record]]` accepts.
pub const SUPPORTED_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CAA,
    RecordType::CNAME,
    RecordType::HTTPS,
    RecordType::MX,
    RecordType::NAPTR,
    RecordType::NS,
    RecordType::PTR,
    RecordType::SRV,
    RecordType::SSHFP,
    RecordType::SVCB,
    RecordType::TLSA,
    RecordType::TXT,
];

fn supported_list() -> String {
    SUPPORTED_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses RDATA in presentation form. Names in it are relative to `origin` unless absolute.
/// Rejects a record that the text parser accepts but whose wire form a DNS parser rejects
/// (found by fuzzing: a CAA tag `issu%` was served, and clients failed to decode the whole
/// response). The record is encoded and decoded again, as a client would.
fn check_wire_round_trip(record: &Record) -> Result<(), String> {
    use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
    let bytes = record.to_bytes().map_err(|e| e.to_string())?;
    Record::from_bytes(&bytes)
        .map(|_| ())
        .map_err(|e| format!("its wire form does not decode: {e}"))
}

fn parse_rdata(rtype: RecordType, text: &str, origin: &Name) -> Result<RData, String> {
    if rtype == RecordType::TXT {
        return parse_txt(text).map(RData::TXT);
    }
    // The master-file parser resolves relative names against the origin, which is what an
    // operator means by `mail` in `10 mail`; parse the value as a one-line zone.
    let line = format!("@ 0 IN {rtype} {text}\n");
    let (_, sets) = Parser::new(line, None, Some(origin.clone()))
        .parse()
        .map_err(|e| e.to_string())?;
    let mut rdata = sets
        .into_values()
        .flat_map(|set| {
            set.records_without_rrsigs()
                .map(|r| r.data.clone())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    match (rdata.pop(), rdata.is_empty()) {
        (Some(data), true) => Ok(data),
        _ => Err("expected exactly one record".to_string()),
    }
}

/// TXT in presentation form: quoted or bare character-strings separated by blanks, with `\"`,
/// `\\` and `\DDD` escapes. A string longer than 255 bytes is split into several
/// character-strings, as DKIM and SPF publishers expect.
pub fn parse_txt(text: &str) -> Result<TXT, String> {
    let mut strings: Vec<Vec<u8>> = Vec::new();
    let mut bytes = text.bytes().peekable();
    loop {
        while bytes.next_if(|b| b.is_ascii_whitespace()).is_some() {}
        let Some(first) = bytes.next() else { break };
        let quoted = first == b'"';
        let mut current = Vec::new();
        let mut pending = if quoted { None } else { Some(first) };
        loop {
            let b = match pending.take() {
                Some(b) => b,
                None => match bytes.next() {
                    Some(b) => b,
                    None if quoted => return Err("unterminated quoted string".into()),
                    None => break,
                },
            };
            match b {
                b'"' if quoted => break,
                b'"' => return Err("a quote inside an unquoted string".into()),
                b if !quoted && b.is_ascii_whitespace() => break,
                b'\\' => {
                    let Some(next) = bytes.next() else {
                        return Err("a backslash at the end".into());
                    };
                    if next.is_ascii_digit() {
                        let d2 = bytes.next().filter(u8::is_ascii_digit);
                        let d3 = bytes.next().filter(u8::is_ascii_digit);
                        let (Some(d2), Some(d3)) = (d2, d3) else {
                            return Err("\\DDD needs three digits".into());
                        };
                        let value = u32::from(next - b'0') * 100
                            + u32::from(d2 - b'0') * 10
                            + u32::from(d3 - b'0');
                        current.push(
                            u8::try_from(value).map_err(|_| format!("\\{value} is above 255"))?,
                        );
                    } else {
                        current.push(next);
                    }
                }
                b => current.push(b),
            }
        }
        if current.is_empty() {
            strings.push(current);
        } else {
            strings.extend(current.chunks(255).map(<[u8]>::to_vec));
        }
    }
    if strings.is_empty() {
        return Err("empty TXT data".into());
    }
    Ok(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
}

#[cfg(test)]
#[path = "load_prop.rs"]
mod proptests;
