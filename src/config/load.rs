//! Reads zone files from disk and validates them into [`Zone`]s.
//!
//! Every error names the file and the key (or line) at fault. Loading never panics on what a
//! file contains; a bad file is an `Err`, and the caller decides whether that stops start-up
//! (it does) or only that zone's reload (the previous version keeps serving).
//!
//! This file reads files and checks the zone as a whole; the per-part validation lives beside
//! it: `records` (SOA, `[[record]]`, the master file, record rules) and `services` (regions,
//! services, endpoints).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::file::ZoneFile;
use super::model::{DEFAULT_TTL, MAX_TTL, Zone};
use super::{clip, clip_msg};

mod records;
mod services;

pub use records::{SUPPORTED_TYPES, parse_txt};

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
            origin: origin.clone(),
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
            dnssec: file
                .dnssec
                .as_ref()
                .map(|d| super::dnssec::load(self.path, &origin, d, crate::dnssec::time::now()))
                .transpose()?,
        };
        self.check_records(&zone, &sources)?;
        self.check_services(&zone, &sources)?;
        Ok(zone)
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
}

#[cfg(test)]
#[path = "load_prop.rs"]
mod proptests;
