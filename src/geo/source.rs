//! Meridian's GeoIP text source format, and building a MaxMind DB from it (`meridian geoip build`).
//!
//! Owns parsing the source (errors name file and line) and writing the MMDB with the
//! `mmdb-writer` crate. Records use the GeoIP2 schema (`country.iso_code`, `continent.code`,
//! `location.latitude/longitude`), so [`GeoDb`](super::GeoDb) reads them exactly like MaxMind's
//! databases, and so do `mmdblookup`, gdnsd and PowerDNS. Never used on the query path.
//!
//! # Format
//!
//! ```text
//! # comment                      (anything after `#` on any line is ignored)
//! NETWORK  COUNTRY  [continent=XX]  [lat=DEG lon=DEG]
//!
//! 2.2.3.0/24        GB                              # Boxford: continent and centroid from table
//! 192.0.2.0/24      GB  lat=51.5 lon=-0.12          # explicit coordinates
//! 2001:db8:1::/48   JP  continent=AS
//! 198.18.0.0/15     -   continent=EU                # no country, continent only
//! ```
//!
//! - `NETWORK` is an IPv4 or IPv6 CIDR with the host bits zero. IPv4 networks are stored under
//!   `::/96` of an IPv6 tree (with the usual `::ffff:0:0/96`, `2001::/32` and `2002::/16`
//!   aliases), so IPv6 networks inside those ranges are refused: write them as IPv4.
//! - `COUNTRY` is an ISO 3166-1 alpha-2 code known to the built-in table, or `-` for none (then
//!   `continent=` is required: a network must say something).
//! - `continent=` is one of AF AN AS EU NA OC SA; default: the country's continent.
//! - `lat=` and `lon=` are decimal degrees, both or neither. Without them the record carries no
//!   location and readers fall back to the country centroid (`coords_from_centroid`).
//! - Networks may overlap; the most specific one wins, whatever the order of the lines. The same
//!   network twice is an error.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::{IpNet, Ipv6Net};
use mmdb_writer::{IpVersion, Value, Writer};

use super::{Continent, Coords, CountryCode, GeoError, country_info};

/// `database_type` in the metadata of databases Meridian builds.
pub const DATABASE_TYPE: &str = "Meridian-Geo";

/// What is wrong with one line of a text source (the line number is in [`GeoError::Source`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceProblem {
    /// The first field is not a CIDR network.
    #[error("bad network {0:?} (expected ADDRESS/PREFIX, e.g. 192.0.2.0/24)")]
    BadNetwork(String),
    /// The network has bits set beyond its prefix.
    #[error("network {given:?} has host bits set (did you mean {network}?)")]
    HostBits {
        /// As written.
        given: String,
        /// With the host bits cleared.
        network: IpNet,
    },
    /// An IPv6 network inside the space that holds (or aliases) IPv4.
    #[error(
        "IPv6 network {0} lies in the IPv4 space (::/96, ::ffff:0:0/96, 2001::/32, 2002::/16); write it as IPv4"
    )]
    Ipv4Space(IpNet),
    /// Nothing after the network.
    #[error("missing country code after the network (use `-` for none)")]
    MissingCountry,
    /// The country code is not in the built-in table.
    #[error("unknown country code {0:?} (expected ISO 3166-1 alpha-2, e.g. GB)")]
    UnknownCountry(String),
    /// `continent=` with a value that is not a continent code.
    #[error("unknown continent {0:?} (expected one of AF, AN, AS, EU, NA, OC, SA)")]
    UnknownContinent(String),
    /// A field that is not `continent=`, `lat=` or `lon=`.
    #[error("unexpected {0:?} (fields are continent=XX, lat=DEG, lon=DEG)")]
    UnknownField(String),
    /// The same field twice on one line.
    #[error("{0} given twice")]
    DuplicateField(&'static str),
    /// `lat=` or `lon=` is not a number in range.
    #[error("bad {key} {value:?} (expected decimal degrees within ±{max})")]
    BadDegrees {
        /// `lat` or `lon`.
        key: &'static str,
        /// As written.
        value: String,
        /// 90 or 180.
        max: u8,
    },
    /// Only one of `lat=` and `lon=`.
    #[error("lat= and lon= go together")]
    HalfCoords,
    /// Country `-` without a continent.
    #[error("no country and no continent: `-` needs continent=XX")]
    NothingToSay,
    /// The network was already on an earlier line.
    #[error("network {network} already given on line {first_line}")]
    DuplicateNetwork {
        /// The network.
        network: IpNet,
        /// Where it was first given.
        first_line: usize,
    },
}

/// What `meridian geoip build` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSummary {
    /// Number of networks in the source (IPv4 plus IPv6).
    pub networks: usize,
    /// Of which IPv4.
    pub ipv4_networks: usize,
    /// Of which IPv6.
    pub ipv6_networks: usize,
    /// Size of the database written.
    pub bytes: usize,
    /// Where it was written.
    pub out: PathBuf,
}

impl fmt::Display for BuildSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {}: {} networks ({} IPv4, {} IPv6), {} bytes",
            self.out.display(),
            self.networks,
            self.ipv4_networks,
            self.ipv6_networks,
            self.bytes
        )
    }
}

/// One parsed source line.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    network: IpNet,
    country: Option<CountryCode>,
    continent: Continent,
    coords: Option<Coords>,
}

impl Entry {
    /// The record in the GeoIP2 schema.
    fn to_value(&self) -> Value {
        let mut fields = vec![(
            "continent",
            Value::map([("code", Value::from(self.continent.as_str()))]),
        )];
        if let Some(country) = self.country {
            fields.push((
                "country",
                Value::map([("iso_code", Value::from(country.as_str()))]),
            ));
        }
        if let Some(c) = self.coords {
            fields.push((
                "location",
                Value::map([
                    ("latitude", Value::from(c.lat)),
                    ("longitude", Value::from(c.lon)),
                ]),
            ));
        }
        Value::map(fields)
    }

    /// Depth of the network in the IPv6 tree (IPv4 lives under `::/96`), for sorting so that
    /// more specific networks are written last and win.
    fn tree_depth(&self) -> u8 {
        match self.network {
            IpNet::V4(n) => 96 + n.prefix_len(),
            IpNet::V6(n) => n.prefix_len(),
        }
    }
}

/// Text source -> MMDB bytes. `source_name` (usually the path) prefixes error messages and goes
/// into the database description.
pub fn build_mmdb(source: &str, source_name: &str) -> Result<Vec<u8>, GeoError> {
    let entries = parse(source, source_name)?;
    write(&entries, source_name)
}

/// Reads the text source `src`, builds the database, checks it reads back, and writes it to
/// `out` (via a temporary file beside it and a rename, so a server reloading `out` never sees
/// half a file).
pub fn run_build(src: &Path, out: &Path) -> Result<BuildSummary, GeoError> {
    let text = std::fs::read_to_string(src).map_err(|source| GeoError::Read {
        path: src.to_owned(),
        source,
    })?;
    let name = src.display().to_string();
    let entries = parse(&text, &name)?;
    let bytes = write(&entries, &name)?;
    let size = bytes.len();
    // Read back before replacing anything: a writer bug must not reach a server.
    let out_name = out.display().to_string();
    let reader =
        maxminddb::Reader::from_source(bytes.as_slice()).map_err(|source| GeoError::Corrupt {
            origin: out_name.clone(),
            source,
        })?;
    reader.verify().map_err(|source| GeoError::Corrupt {
        origin: out_name,
        source,
    })?;

    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write_err = |source| GeoError::Write {
        path: out.to_owned(),
        source,
    };
    std::fs::write(&tmp, &bytes).map_err(write_err)?;
    std::fs::rename(&tmp, out).map_err(|source| {
        // Best effort: the rename error is what the user needs to see.
        let _ = std::fs::remove_file(&tmp);
        write_err(source)
    })?;

    let ipv4_networks = entries
        .iter()
        .filter(|e| matches!(e.network, IpNet::V4(_)))
        .count();
    Ok(BuildSummary {
        networks: entries.len(),
        ipv4_networks,
        ipv6_networks: entries.len() - ipv4_networks,
        bytes: size,
        out: out.to_owned(),
    })
}

fn parse(source: &str, name: &str) -> Result<Vec<Entry>, GeoError> {
    let mut entries = Vec::new();
    let mut seen: HashMap<IpNet, usize> = HashMap::new();
    for (index, raw) in source.lines().enumerate() {
        let line = index + 1;
        let err = |problem| GeoError::Source {
            name: name.to_owned(),
            line,
            problem,
        };
        let content = raw.split_once('#').map_or(raw, |(before, _)| before);
        let Some(entry) = parse_line(content).map_err(err)? else {
            continue;
        };
        if let Some(&first_line) = seen.get(&entry.network) {
            return Err(err(SourceProblem::DuplicateNetwork {
                network: entry.network,
                first_line,
            }));
        }
        seen.insert(entry.network, line);
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(GeoError::EmptySource {
            name: name.to_owned(),
        });
    }
    Ok(entries)
}

/// Parses one line with its comment already removed; `None` for a blank line.
fn parse_line(content: &str) -> Result<Option<Entry>, SourceProblem> {
    let mut fields = content.split_whitespace();
    let Some(net_text) = fields.next() else {
        return Ok(None);
    };
    let network = parse_network(net_text)?;
    let country = match fields.next() {
        None => return Err(SourceProblem::MissingCountry),
        Some("-") => None,
        Some(code) => Some(
            CountryCode::from_bytes(code.as_bytes())
                .ok_or_else(|| SourceProblem::UnknownCountry(code.to_owned()))?,
        ),
    };

    let (mut continent, mut lat, mut lon) = (None, None, None);
    for field in fields {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| SourceProblem::UnknownField(field.to_owned()))?;
        match key {
            "continent" => {
                let c = Continent::from_code(value)
                    .ok_or_else(|| SourceProblem::UnknownContinent(value.to_owned()))?;
                set_once(&mut continent, c, "continent")?;
            }
            "lat" => set_once(&mut lat, parse_degrees("lat", value, 90)?, "lat")?,
            "lon" => set_once(&mut lon, parse_degrees("lon", value, 180)?, "lon")?,
            _ => return Err(SourceProblem::UnknownField(field.to_owned())),
        }
    }
    let coords = match (lat, lon) {
        (Some(lat), Some(lon)) => Some(Coords { lat, lon }),
        (None, None) => None,
        _ => return Err(SourceProblem::HalfCoords),
    };
    let continent = continent
        .or_else(|| country.and_then(country_info).map(|(c, _)| c))
        .ok_or(SourceProblem::NothingToSay)?;
    Ok(Some(Entry {
        network,
        country,
        continent,
        coords,
    }))
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), SourceProblem> {
    if slot.replace(value).is_some() {
        return Err(SourceProblem::DuplicateField(key));
    }
    Ok(())
}

fn parse_degrees(key: &'static str, value: &str, max: u8) -> Result<f64, SourceProblem> {
    let bad = || SourceProblem::BadDegrees {
        key,
        value: value.to_owned(),
        max,
    };
    let degrees: f64 = value.parse().map_err(|_| bad())?;
    if !(-f64::from(max)..=f64::from(max)).contains(&degrees) {
        return Err(bad());
    }
    Ok(degrees)
}

/// The IPv6 ranges that hold IPv4 in the tree Meridian writes: IPv4 itself under `::/96`, and
/// the writer's aliases of it.
const IPV4_SPACE: [(Ipv6Addr, u8); 4] = [
    (Ipv6Addr::UNSPECIFIED, 96),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
];

fn parse_network(text: &str) -> Result<IpNet, SourceProblem> {
    let given: IpNet = text
        .parse()
        .map_err(|_| SourceProblem::BadNetwork(text.to_owned()))?;
    let network = given.trunc();
    if network != given {
        return Err(SourceProblem::HostBits {
            given: text.to_owned(),
            network,
        });
    }
    if let IpNet::V6(v6) = network {
        let inside = IPV4_SPACE
            .iter()
            .any(|&(addr, len)| Ipv6Net::new(addr, len).is_ok_and(|space| space.contains(&v6)));
        if inside {
            return Err(SourceProblem::Ipv4Space(network));
        }
    }
    Ok(network)
}

/// Build time for the metadata: `SOURCE_DATE_EPOCH` if set (reproducible builds), else now.
fn build_time() -> SystemTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        .unwrap_or_else(SystemTime::now)
}

fn write(entries: &[Entry], name: &str) -> Result<Vec<u8>, GeoError> {
    let description = format!("Meridian GeoIP database built from {name}");
    let mut writer = Writer::builder(DATABASE_TYPE)
        .languages(["en"])
        .description(&[("en", description.as_str())])
        .ip_version(IpVersion::V6)
        .build_epoch(build_time())
        .build();
    let mut ordered: Vec<&Entry> = entries.iter().collect();
    // Stable: equal depths keep source order (they cannot overlap unless equal, and equal
    // networks were rejected).
    ordered.sort_by_key(|e| e.tree_depth());
    for entry in ordered {
        writer
            .insert_value(entry.network, entry.to_value())
            .map_err(|source| GeoError::Build {
                name: name.to_owned(),
                source,
            })?;
    }
    writer.to_bytes().map_err(|source| GeoError::Build {
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
