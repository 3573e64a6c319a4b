//! [`GeoDb`]: an opened MaxMind DB and the query-path lookup on it.
//!
//! Owns turning a database record into a [`Location`] for both schemas people deploy: GeoIP2
//! (`country.iso_code`, `continent.code`, `location.latitude/longitude`: MaxMind, DB-IP, and
//! what `meridian geoip build` writes) and the flat ip-location-db / IPinfo style
//! (`country_code`, `continent_code`, `latitude`, `longitude`). Whatever the record lacks comes
//! from the country table. `lookup` never allocates, locks or fails: records are decoded into
//! structs that borrow their strings from the database buffer, and any decoding problem means
//! "no data".

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use std::collections::HashSet;

use maxminddb::{MaxMindDbError, Reader, WithinOptions};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{Continent, Coords, CountryCode, GeoError, Location, country_info, source};

/// Marker that starts the metadata section of every MaxMind DB (spec: "MaxMind DB Metadata").
const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

/// The metadata section is at most 128 KiB, so the marker is in the file's last 128 KiB.
const METADATA_MAX_SIZE: usize = 128 * 1024;

/// An opened GeoIP database. Immutable after opening, so it is `Send + Sync` and can sit in the
/// routing snapshot shared by all query tasks.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    description: String,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Opens a database: a binary .mmdb file, or Meridian's text source format (built in memory
    /// with the MMDB writer, then read with maxminddb). A corrupt/unreadable file is an error
    /// naming the path.
    ///
    /// A file is taken as binary if it ends in `.mmdb` or carries the MaxMind DB metadata
    /// marker; anything else must be a UTF-8 text source.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        let named_mmdb = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("mmdb"));
        if named_mmdb || has_metadata_marker(&bytes) {
            return GeoDb::from_mmdb_bytes(bytes, &origin);
        }
        let text = String::from_utf8(bytes).map_err(|_| GeoError::UnknownFormat {
            path: path.to_owned(),
        })?;
        let mmdb = source::build_mmdb(&text, &origin)?;
        GeoDb::from_mmdb_bytes(mmdb, &origin)
    }

    /// Reads a MaxMind DB from bytes; `origin` (usually the path) names it in errors and in the
    /// description. Every network and record is walked and decoded here, so a corrupt database
    /// fails at open (or reload) instead of misrouting queries later.
    pub fn from_mmdb_bytes(bytes: Vec<u8>, origin: &str) -> Result<GeoDb, GeoError> {
        let corrupt = |source| GeoError::Corrupt {
            origin: origin.to_owned(),
            source,
        };
        let reader = Reader::from_source(bytes).map_err(corrupt)?;
        check_records(&reader).map_err(corrupt)?;
        let meta = reader.metadata();
        let description = format!(
            "{} ({origin}, built {})",
            meta.database_type,
            format_date(meta.build_epoch)
        );
        Ok(GeoDb {
            reader,
            description,
        })
    }

    /// Looks an address up. On the query path: does not allocate, lock or fail.
    ///
    /// An address the database has no record for, or whose record cannot be decoded, is
    /// `found: false`. If the tree itself cannot be walked (the open-time check makes that
    /// impossible, but it is not worth a panic), the prefix length is the full address length, so an ECS scope built from
    /// it never claims the answer fits more clients than the one asking.
    pub fn lookup(&self, ip: IpAddr) -> Location {
        let full_len = match ip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let Ok(result) = self.reader.lookup(ip) else {
            return Location::not_found(full_len);
        };
        let prefix_len = match (ip, result.network()) {
            (IpAddr::V4(_), Ok(net)) if net.is_ipv4() => net.prefix(),
            // An IPv4 address whose match sits above the IPv4 subtree (::/96) of an IPv6 tree:
            // the whole IPv4 space shares that record.
            (IpAddr::V4(_), Ok(_)) => 0,
            (IpAddr::V6(_), Ok(net)) => net.prefix(),
            (_, Err(_)) => full_len,
        };
        match result.decode::<Record<'_>>() {
            Ok(Some(record)) => record.to_location(prefix_len),
            Ok(None) | Err(_) => Location::not_found(prefix_len),
        }
    }

    /// Human-readable summary, e.g. `GeoIP2-City (geo/city.mmdb, built 2024-05-01)`.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// Walks the whole search tree and decodes every distinct record the way `lookup` will.
///
/// Not `Reader::verify`: that also insists on metadata details (a non-empty `description`)
/// that real databases such as ip-location-db's leave out, and it checks nothing `lookup`
/// depends on beyond what this walk does.
fn check_records(reader: &Reader<Vec<u8>>) -> Result<(), MaxMindDbError> {
    // A tree of N nodes has N + 1 leaves. Counting empty leaves too bounds the walk even when
    // corrupt records turn the tree into a graph with far more paths than nodes.
    let limit = usize::try_from(reader.metadata().node_count)
        .unwrap_or(usize::MAX)
        .saturating_mul(2)
        .saturating_add(2);
    let mut decoded = HashSet::new();
    let all = WithinOptions::default().include_networks_without_data();
    for (visited, item) in reader.networks(all)?.enumerate() {
        if visited > limit {
            return Err(MaxMindDbError::invalid_database(
                "search tree has more networks than nodes (a cycle?)",
            ));
        }
        let result = item?;
        if let Some(offset) = result.offset()
            && decoded.insert(offset)
        {
            result.decode::<Record<'_>>()?;
        }
    }
    Ok(())
}

fn has_metadata_marker(bytes: &[u8]) -> bool {
    let tail = bytes
        .get(bytes.len().saturating_sub(METADATA_MAX_SIZE)..)
        .unwrap_or(bytes);
    tail.windows(METADATA_MARKER.len())
        .any(|w| w == METADATA_MARKER)
}

/// `YYYY-MM-DD` (UTC) of a Unix timestamp.
fn format_date(epoch_secs: u64) -> String {
    let (year, month, day) = civil_from_days(i64::try_from(epoch_secs / 86_400).unwrap_or(0));
    format!("{year:04}-{month:02}-{day:02}")
}

/// Year, month, day of a count of days since 1970-01-01, without a date library (Howard
/// Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The fields of a record that Meridian reads, in both schemas. Unknown fields are skipped
/// without being expanded; strings borrow from the database buffer.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Named<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentRecord<'a>>,
    #[serde(default)]
    location: Option<LocationRecord>,
    // Flat schema (ip-location-db, IPinfo).
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    continent_code: Option<&'a str>,
    #[serde(default)]
    latitude: Option<Degrees>,
    #[serde(default)]
    longitude: Option<Degrees>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentRecord<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct LocationRecord {
    #[serde(default)]
    latitude: Option<Degrees>,
    #[serde(default)]
    longitude: Option<Degrees>,
}

impl Record<'_> {
    fn to_location(&self, prefix_len: u8) -> Location {
        let country = self
            .country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or(self.country_code)
            .and_then(|code| CountryCode::from_bytes(code.as_bytes()));
        let table = country.and_then(country_info);
        let continent = self
            .continent
            .as_ref()
            .and_then(|c| c.code)
            .or(self.continent_code)
            .and_then(Continent::from_code)
            .or(table.map(|(continent, _)| continent));
        let (lat, lon) = match &self.location {
            Some(l) => (l.latitude, l.longitude),
            None => (self.latitude, self.longitude),
        };
        let db_coords = match (lat, lon) {
            (Some(Degrees(lat)), Some(Degrees(lon))) => Coords::new(lat, lon),
            _ => None,
        };
        let centroid = table.map(|(_, coords)| coords);
        Location {
            country,
            continent,
            coords: db_coords.or(centroid),
            coords_from_centroid: db_coords.is_none() && centroid.is_some(),
            prefix_len,
            found: true,
        }
    }
}

/// A latitude or longitude, accepted as any MMDB number or a numeric string: converters
/// differ in what they write, and a type mismatch must not lose the whole record.
#[derive(Clone, Copy)]
struct Degrees(f64);

impl<'de> Deserialize<'de> for Degrees {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Degrees, D::Error> {
        struct DegreesVisitor;

        impl Visitor<'_> for DegreesVisitor {
            type Value = Degrees;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of degrees")
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Degrees, E> {
                Ok(Degrees(v))
            }

            fn visit_f32<E: de::Error>(self, v: f32) -> Result<Degrees, E> {
                Ok(Degrees(f64::from(v)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Degrees, E> {
                // Degrees are at most 180 in magnitude; anything that loses precision here is
                // rejected later by the range check anyway.
                #[allow(clippy::cast_precision_loss)]
                Ok(Degrees(v as f64))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Degrees, E> {
                #[allow(clippy::cast_precision_loss)]
                Ok(Degrees(v as f64))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Degrees, E> {
                v.trim()
                    .parse()
                    .map(Degrees)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_any(DegreesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const CITY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/geoip/GeoIP2-City-Test.mmdb"
    );
    const COUNTRY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/geoip/GeoLite2-Country-Test.mmdb"
    );
    const FLAT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/geoip/geo-whois-asn-country.mmdb"
    );

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn open(path: &str) -> GeoDb {
        GeoDb::open(Path::new(path)).unwrap()
    }

    #[test]
    fn geodb_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<GeoDb>();
    }

    #[test]
    fn city_db_country_continent_coords_prefix() {
        let db = open(CITY);
        // (address, country, continent, lat, lon, prefix_len)
        let cases = [
            ("2.2.3.1", "GB", Continent::EU, 51.75, -1.25, 24),
            ("89.160.20.130", "SE", Continent::EU, 58.4167, 15.6167, 25),
            ("89.160.20.113", "SE", Continent::EU, 58.4167, 15.6167, 28),
            ("214.78.120.5", "US", Continent::NA, 32.7405, -117.0935, 22),
            ("214.0.0.1", "SG", Continent::AS, 1.336, 103.7716, 24),
            ("214.0.1.200", "AU", Continent::OC, -37.8159, 144.9669, 24),
            ("175.16.199.7", "CN", Continent::AS, 43.88, 125.3228, 24),
            ("81.2.69.170", "GB", Continent::EU, 51.5142, -0.0931, 27),
            ("216.160.83.60", "US", Continent::NA, 47.2513, -122.3149, 29),
        ];
        for (addr, country, continent, lat, lon, prefix_len) in cases {
            let got = db.lookup(ip(addr));
            let want = Location {
                country: Some(country.parse().unwrap()),
                continent: Some(continent),
                coords: Some(Coords { lat, lon }),
                coords_from_centroid: false,
                prefix_len,
                found: true,
            };
            assert_eq!(got, want, "{addr}");
        }
    }

    #[test]
    fn city_db_uses_country_not_registered_country() {
        // 2.125.160.216/29: country GB, registered_country FR.
        let got = open(CITY).lookup(ip("2.125.160.217"));
        assert_eq!(got.country, Some("GB".parse().unwrap()));
        assert_eq!(got.prefix_len, 29);
    }

    #[test]
    fn city_db_record_with_continent_only() {
        let got = open(CITY).lookup(ip("2.3.3.3"));
        assert_eq!(
            got,
            Location {
                country: None,
                continent: Some(Continent::EU),
                coords: None,
                coords_from_centroid: false,
                prefix_len: 24,
                found: true,
            }
        );
    }

    #[test]
    fn not_found_addresses_report_the_empty_network() {
        let db = open(CITY);
        // Prefix lengths cross-checked with python3-maxminddb's get_with_prefix_len.
        for (addr, prefix_len) in [("10.0.0.1", 8), ("127.0.0.1", 8), ("1.1.1.1", 8)] {
            assert_eq!(
                db.lookup(ip(addr)),
                Location::not_found(prefix_len),
                "{addr}"
            );
        }
        assert_eq!(db.lookup(ip("2001:db8::1")), Location::not_found(32));
    }

    #[test]
    fn ipv6_lookup_in_city_db() {
        let got = open(CITY).lookup(ip("2a02:d3c0::1"));
        assert_eq!(got.country, Some("GB".parse().unwrap()));
        assert_eq!(got.continent, Some(Continent::EU));
        assert_eq!(got.prefix_len, 29);
        assert!(got.found);
    }

    #[test]
    fn ipv4_mapped_ipv6_address_finds_ipv4_data() {
        let got = open(CITY).lookup(ip("::ffff:2.2.3.1"));
        assert_eq!(got.country, Some("GB".parse().unwrap()));
        // In its own family (IPv6) the network is ::ffff:2.2.3.0/120.
        assert_eq!(got.prefix_len, 120);
    }

    #[test]
    fn country_db_fills_coords_from_centroid() {
        let got = open(COUNTRY).lookup(ip("50.114.0.1"));
        assert_eq!(
            got,
            Location {
                country: Some("US".parse().unwrap()),
                continent: Some(Continent::NA),
                coords: Some(Coords {
                    lat: 38.0,
                    lon: -97.0
                }),
                coords_from_centroid: true,
                prefix_len: 22,
                found: true,
            }
        );
    }

    #[test]
    fn flat_schema_fills_continent_and_coords_from_table() {
        let db = open(FLAT);
        let got = db.lookup(ip("8.8.8.8"));
        assert_eq!(got.country, Some("US".parse().unwrap()));
        assert_eq!(got.continent, Some(Continent::NA));
        assert_eq!(
            got.coords,
            Some(Coords {
                lat: 38.0,
                lon: -97.0
            })
        );
        assert!(got.coords_from_centroid && got.found);
        assert_eq!(got.prefix_len, 15, "cross-checked with python3-maxminddb");
        let gb = db.lookup(ip("81.2.69.142"));
        assert_eq!(gb.country, Some("GB".parse().unwrap()));
        assert_eq!(gb.continent, Some(Continent::EU));
        let loopback = db.lookup(ip("127.0.0.1"));
        assert!(
            !loopback.found && loopback.country.is_none(),
            "{loopback:?}"
        );
    }

    #[test]
    fn description_names_type_origin_and_date() {
        let db = open(CITY);
        assert!(
            db.description().starts_with("GeoIP2-City ("),
            "{}",
            db.description()
        );
        assert!(db.description().contains(CITY), "{}", db.description());
        assert!(
            db.description().contains(", built 20"),
            "{}",
            db.description()
        );
    }

    #[test]
    fn corrupt_or_missing_files_name_the_path() {
        let dir = std::env::temp_dir().join(format!("meridian-geo-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let truncated = dir.join("truncated.mmdb");
        let whole = std::fs::read(CITY).unwrap();
        std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
        let err = GeoDb::open(&truncated).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: not a valid MaxMind DB: ",
                truncated.display()
            )),
            "{err}"
        );

        // Metadata intact but the search tree scribbled over: verify() must catch it.
        let scribbled = dir.join("scribbled.mmdb");
        let mut bytes = whole.clone();
        for b in bytes.iter_mut().take(4096) {
            *b = 0xff;
        }
        std::fs::write(&scribbled, &bytes).unwrap();
        let err = GeoDb::open(&scribbled).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: not a valid MaxMind DB: ",
                scribbled.display()
            )),
            "{err}"
        );

        let binary = dir.join("binary.dat");
        std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        assert_eq!(
            GeoDb::open(&binary).unwrap_err().to_string(),
            format!(
                "{}: neither a MaxMind DB nor a text source (not UTF-8)",
                binary.display()
            )
        );

        let missing = dir.join("missing.mmdb");
        let err = GeoDb::open(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn format_date_handles_known_days() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(951_782_400), "2000-02-29");
        assert_eq!(format_date(1_709_251_199), "2024-02-29");
        assert_eq!(format_date(1_735_689_600), "2025-01-01");
    }
}
