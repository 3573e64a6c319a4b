//! GeoIP: maps a client address to a [`Location`] (country, continent, coordinates) and the
//! prefix length of the database network that holds it (the ECS scope of a decision GeoIP made
//! stays inside it).
//!
//! Owns reading MaxMind DB files ([`GeoDb`], in `db.rs`), Meridian's text source format and its
//! MMDB writer (`source.rs`, behind `meridian geoip build`), and the built-in country table
//! (`countries.rs`). Opening and building are control plane: they read files, allocate and fail
//! with a [`GeoError`] that names the file. [`GeoDb::lookup`] is on the DNS query path: it must
//! never allocate, lock, do I/O or fail; every problem becomes "not found".

mod countries;
mod db;
mod source;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use db::GeoDb;
pub(crate) use db::civil_from_days;
pub use source::{BuildSummary, DATABASE_TYPE, SourceProblem, build_mmdb, run_build};

/// Where an address is, as far as the database knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Location {
    /// Country of the network, if the database names one that the built-in table knows.
    pub country: Option<CountryCode>,
    /// Continent: from the database, else from the country table.
    pub continent: Option<Continent>,
    /// Coordinates: from the database, else the country's centroid.
    pub coords: Option<Coords>,
    /// True when `coords` is the country centroid rather than a position from the database.
    pub coords_from_centroid: bool,
    /// Prefix length of the DB network that contains the address (found or not found), in the
    /// address's own family: 0..=32 for IPv4 (also for IPv4 in an IPv6 tree), 0..=128 for IPv6.
    /// Whatever GeoIP decides holds for this network, so the ECS scope of a decision that
    /// depends on GeoIP is at least this long. It is the network of the database's search tree,
    /// which can be longer than the source network: a /16 with a /24 carved out of it is stored
    /// as several shorter networks around the /24.
    pub prefix_len: u8,
    /// True when the database has a record for the address (even one without a country).
    pub found: bool,
}

impl Location {
    /// A location for an address the database has no record for.
    pub const fn not_found(prefix_len: u8) -> Location {
        Location {
            country: None,
            continent: None,
            coords: None,
            coords_from_centroid: false,
            prefix_len,
            found: false,
        }
    }

    /// A client placed by country only, at its centroid (a row of [`countries`]): what the
    /// traffic map and the per-country orders answer for.
    pub const fn at_centroid(
        country: CountryCode,
        continent: Continent,
        centroid: Coords,
    ) -> Location {
        Location {
            country: Some(country),
            continent: Some(continent),
            coords: Some(centroid),
            coords_from_centroid: true,
            prefix_len: 0,
            found: true,
        }
    }
}

/// An ISO 3166-1 alpha-2 country code known to the built-in table, stored uppercase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Accepts two ASCII letters in either case if the built-in table has the country.
    /// Does not allocate, so the query path uses it on codes borrowed from the database.
    pub fn from_bytes(bytes: &[u8]) -> Option<CountryCode> {
        let [a, b] = *bytes else {
            return None;
        };
        let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
        countries::find(code).map(|row| CountryCode(row.code))
    }

    /// The code as an uppercase `&str`, e.g. `"GB"`.
    pub fn as_str(&self) -> &str {
        // Only built from table rows, which the tests check are ASCII uppercase.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for CountryCode {
    type Err = GeoError;

    fn from_str(s: &str) -> Result<CountryCode, GeoError> {
        CountryCode::from_bytes(s.as_bytes()).ok_or_else(|| GeoError::UnknownCountry(s.to_owned()))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A continent, by the two-letter codes GeoIP2 databases use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Continent {
    /// Africa.
    AF,
    /// Antarctica.
    AN,
    /// Asia.
    AS,
    /// Europe.
    EU,
    /// North America (including Central America and the Caribbean).
    NA,
    /// Oceania.
    OC,
    /// South America.
    SA,
}

impl Continent {
    /// All continents, in code order.
    pub const ALL: [Continent; 7] = [
        Continent::AF,
        Continent::AN,
        Continent::AS,
        Continent::EU,
        Continent::NA,
        Continent::OC,
        Continent::SA,
    ];

    /// The two-letter code, e.g. `"EU"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Continent::AF => "AF",
            Continent::AN => "AN",
            Continent::AS => "AS",
            Continent::EU => "EU",
            Continent::NA => "NA",
            Continent::OC => "OC",
            Continent::SA => "SA",
        }
    }

    /// Parses a code in either case without allocating (used on database strings).
    pub fn from_code(code: &str) -> Option<Continent> {
        Continent::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(code))
    }
}

impl FromStr for Continent {
    type Err = GeoError;

    fn from_str(s: &str) -> Result<Continent, GeoError> {
        Continent::from_code(s).ok_or_else(|| GeoError::UnknownContinent(s.to_owned()))
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point on the globe in degrees (WGS 84 as GeoIP databases give it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coords {
    /// Latitude, -90..=90 (north positive).
    pub lat: f64,
    /// Longitude, -180..=180 (east positive).
    pub lon: f64,
}

impl Coords {
    /// Coordinates if both are finite and in range, else `None`.
    pub fn new(lat: f64, lon: f64) -> Option<Coords> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
            .then_some(Coords { lat, lon })
    }
}

impl fmt::Display for Coords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.lat, self.lon)
    }
}

/// Continent and approximate centroid of a country, from the built-in table.
pub fn country_info(code: CountryCode) -> Option<(Continent, Coords)> {
    countries::find(code.0).map(|row| {
        (
            row.continent,
            Coords {
                lat: row.lat,
                lon: row.lon,
            },
        )
    })
}

/// Every country of the built-in table, by code: code, continent and approximate centroid.
/// For views that cover the whole world (the status page's traffic map); control plane only.
pub fn countries() -> impl Iterator<Item = (CountryCode, Continent, Coords)> {
    countries::COUNTRIES.iter().map(|row| {
        (
            CountryCode(row.code),
            row.continent,
            Coords {
                lat: row.lat,
                lon: row.lon,
            },
        )
    })
}

/// Mean Earth radius (IUGG), in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Great-circle distance between two points in kilometres (haversine formula).
pub fn distance_km(a: Coords, b: Coords) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    // Rounding can push h a hair above 1 for antipodes; asin would then return NaN.
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Everything that can go wrong opening, parsing or building a GeoIP database.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The output file could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a usable MaxMind DB (corrupt, truncated, or another format).
    #[error("{origin}: not a valid MaxMind DB: {source}")]
    Corrupt {
        /// The file (or other origin) the bytes came from.
        origin: String,
        /// What the reader found wrong.
        source: maxminddb::MaxMindDbError,
    },
    /// The file is neither a MaxMind DB nor UTF-8 text.
    #[error("{}: neither a MaxMind DB nor a text source (not UTF-8)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A line of a text source is wrong.
    #[error("{name}:{line}: {problem}")]
    Source {
        /// The source's name (its path).
        name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        problem: SourceProblem,
    },
    /// A text source lists no networks at all.
    #[error("{name}: no networks (expected lines like `192.0.2.0/24  GB`)")]
    EmptySource {
        /// The source's name (its path).
        name: String,
    },
    /// The MMDB writer refused the data.
    #[error("{name}: cannot build MaxMind DB: {source}")]
    Build {
        /// The source's name (its path).
        name: String,
        /// The writer's error.
        source: mmdb_writer::Error,
    },
    /// A country code the built-in table does not know.
    #[error("unknown country code {0:?} (expected ISO 3166-1 alpha-2, e.g. GB)")]
    UnknownCountry(String),
    /// A continent code that is not one of the seven.
    #[error("unknown continent {0:?} (expected one of AF, AN, AS, EU, NA, OC, SA)")]
    UnknownContinent(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_code_parses_either_case_and_displays_uppercase() {
        let gb: CountryCode = "gb".parse().unwrap();
        assert_eq!(gb, "GB".parse().unwrap());
        assert_eq!(gb.to_string(), "GB");
        assert_eq!(gb.as_str(), "GB");
        assert_eq!(
            CountryCode::from_bytes(b"XK").map(|c| c.to_string()),
            Some("XK".into())
        );
    }

    #[test]
    fn country_code_rejects_unknown_and_malformed() {
        for bad in ["", "G", "GBR", "ZZ", "EU", "1A", "G\u{e9}"] {
            let err = bad.parse::<CountryCode>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("unknown country code {bad:?} (expected ISO 3166-1 alpha-2, e.g. GB)")
            );
        }
    }

    #[test]
    fn continent_round_trips() {
        for c in Continent::ALL {
            assert_eq!(c.to_string().parse::<Continent>().unwrap(), c);
            assert_eq!(c.as_str().to_lowercase().parse::<Continent>().unwrap(), c);
        }
        assert_eq!(
            "XX".parse::<Continent>().unwrap_err().to_string(),
            "unknown continent \"XX\" (expected one of AF, AN, AS, EU, NA, OC, SA)"
        );
    }

    #[test]
    fn country_info_uses_the_table() {
        let (cont, c) = country_info("SE".parse().unwrap()).unwrap();
        assert_eq!(cont, Continent::EU);
        assert_eq!(
            c,
            Coords {
                lat: 62.0,
                lon: 15.0
            }
        );
    }

    #[test]
    fn countries_lists_the_whole_table_in_code_order() {
        let all: Vec<_> = countries().collect();
        assert_eq!(all.len(), 250);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        let gb = all.iter().find(|c| c.0.as_str() == "GB").unwrap();
        assert_eq!(Some((gb.1, gb.2)), country_info(gb.0));
    }

    #[test]
    fn coords_new_checks_ranges() {
        assert!(Coords::new(90.0, -180.0).is_some());
        assert!(Coords::new(90.1, 0.0).is_none());
        assert!(Coords::new(0.0, 180.5).is_none());
        assert!(Coords::new(f64::NAN, 0.0).is_none());
    }

    #[test]
    fn distance_km_matches_known_distances() {
        let london = Coords::new(51.5074, -0.1278).unwrap();
        let paris = Coords::new(48.8566, 2.3522).unwrap();
        let new_york = Coords::new(40.7128, -74.0060).unwrap();
        let sydney = Coords::new(-33.8688, 151.2093).unwrap();
        let cases = [
            (london, paris, 343.5),
            (london, new_york, 5570.2),
            (london, sydney, 16993.9),
            (london, london, 0.0),
        ];
        for (a, b, want) in cases {
            let got = distance_km(a, b);
            assert!(
                (got - want).abs() < 2.0,
                "{a} -> {b}: {got} km, want {want}"
            );
            assert!((distance_km(b, a) - got).abs() < 1e-9, "not symmetric");
        }
        // Antipodes: half the circumference, no NaN.
        let d = distance_km(
            Coords { lat: 0.0, lon: 0.0 },
            Coords {
                lat: 0.0,
                lon: 180.0,
            },
        );
        assert!(
            (d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6,
            "{d}"
        );
    }
}
