use super::*;
use crate::geo::{GeoDb, Location};
use std::net::IpAddr;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/meridian-sample.txt");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn db(source: &str) -> GeoDb {
    GeoDb::from_mmdb_bytes(build_mmdb(source, "test.txt").unwrap(), "test.txt").unwrap()
}

#[test]
fn round_trip_lookups_and_prefix_lengths() {
    let db = db("
        # comment line
        2.2.3.0/24        GB                         # from the table
        192.0.2.0/24      US  continent=EU lat=10.5 lon=-20.25
        192.0.2.128/25    -   continent=OC
        10.0.0.0/8        DE
        2001:db8:1::/48   JP
        2001:db8:2::/48   BR  lat=-23.5 lon=-46.6
    ");
    let gb = country_info("GB".parse().unwrap()).unwrap();
    let cases = [
        (
            "2.2.3.77",
            Location {
                country: Some("GB".parse().unwrap()),
                continent: Some(Continent::EU),
                coords: Some(gb.1),
                coords_from_centroid: true,
                prefix_len: 24,
                found: true,
            },
        ),
        (
            "192.0.2.1",
            Location {
                country: Some("US".parse().unwrap()),
                continent: Some(Continent::EU),
                coords: Some(Coords {
                    lat: 10.5,
                    lon: -20.25,
                }),
                coords_from_centroid: false,
                prefix_len: 25,
                found: true,
            },
        ),
        (
            "192.0.2.200",
            Location {
                country: None,
                continent: Some(Continent::OC),
                coords: None,
                coords_from_centroid: false,
                prefix_len: 25,
                found: true,
            },
        ),
        (
            "2001:db8:2:ffff::1",
            Location {
                country: Some("BR".parse().unwrap()),
                continent: Some(Continent::SA),
                coords: Some(Coords {
                    lat: -23.5,
                    lon: -46.6,
                }),
                coords_from_centroid: false,
                prefix_len: 48,
                found: true,
            },
        ),
    ];
    for (addr, want) in cases {
        assert_eq!(db.lookup(ip(addr)), want, "{addr}");
    }
    let jp = db.lookup(ip("2001:db8:1::5"));
    assert_eq!(
        (jp.country, jp.continent, jp.prefix_len),
        (Some("JP".parse().unwrap()), Some(Continent::AS), 48)
    );
    assert_eq!(
        db.lookup(ip("10.200.0.1")).country,
        Some("DE".parse().unwrap())
    );
    // Not found: 2.2.2.0/24 is the empty sibling of 2.2.3.0/24; 2.2.4.1 sits in 2.2.4.0/22.
    assert_eq!(db.lookup(ip("2.2.2.1")), Location::not_found(24));
    assert_eq!(db.lookup(ip("2.2.4.1")), Location::not_found(22));
    assert_eq!(db.lookup(ip("2001:db8:3::1")), Location::not_found(48));
    // IPv4-mapped and 6to4 aliases reach the IPv4 data.
    assert!(db.lookup(ip("::ffff:2.2.3.1")).found);
    assert_eq!(
        db.lookup(ip("2002:0202:0301::1")).country,
        Some("GB".parse().unwrap())
    );
    assert!(
        db.description()
            .starts_with("Meridian-Geo (test.txt, built ")
    );
}

#[test]
fn more_specific_network_wins_whatever_the_order() {
    let db = db("
        10.1.2.0/24  FR
        10.0.0.0/8   DE
        10.1.0.0/16  IT
    ");
    let country = |a| db.lookup(ip(a)).country.map(|c| c.to_string());
    assert_eq!(country("10.1.2.3").as_deref(), Some("FR"));
    assert_eq!(country("10.1.3.3").as_deref(), Some("IT"));
    assert_eq!(country("10.2.3.3").as_deref(), Some("DE"));
    // Prefix lengths are those of the tree's networks: the /16 is split around the /24.
    assert_eq!(db.lookup(ip("10.1.3.3")).prefix_len, 24);
    assert_eq!(db.lookup(ip("10.1.0.3")).prefix_len, 23);
    assert_eq!(db.lookup(ip("10.1.128.1")).prefix_len, 17);
    assert_eq!(db.lookup(ip("10.128.0.1")).prefix_len, 9);
}

#[test]
fn metadata_is_what_the_format_promises() {
    let bytes = build_mmdb("192.0.2.0/24 GB", "meta.txt").unwrap();
    let reader = maxminddb::Reader::from_source(bytes).unwrap();
    reader.verify().unwrap();
    let m = reader.metadata();
    assert_eq!(m.database_type, DATABASE_TYPE);
    assert_eq!(m.binary_format_major_version, 2);
    assert_eq!(m.ip_version, 6);
    assert!([24, 28, 32].contains(&m.record_size), "{}", m.record_size);
    assert_eq!(m.languages, ["en"]);
    assert_eq!(
        m.description.get("en").map(String::as_str),
        Some("Meridian GeoIP database built from meta.txt")
    );
    assert!(m.build_epoch > 1_700_000_000, "{}", m.build_epoch);
}

#[test]
fn parse_errors_name_file_line_and_problem() {
    let cases = [
        (
            "2.2.3.0/33 GB",
            "bad network \"2.2.3.0/33\" (expected ADDRESS/PREFIX, e.g. 192.0.2.0/24)",
        ),
        (
            "2.2.3.0 GB",
            "bad network \"2.2.3.0\" (expected ADDRESS/PREFIX, e.g. 192.0.2.0/24)",
        ),
        (
            "2.2.3.1/24 GB",
            "network \"2.2.3.1/24\" has host bits set (did you mean 2.2.3.0/24?)",
        ),
        (
            "::ffff:2.2.3.0/120 GB",
            "IPv6 network ::ffff:2.2.3.0/120 lies in the IPv4 space (::/96, ::ffff:0:0/96, 2001::/32, 2002::/16); write it as IPv4",
        ),
        (
            "2.2.3.0/24",
            "missing country code after the network (use `-` for none)",
        ),
        (
            "2.2.3.0/24 XX",
            "unknown country code \"XX\" (expected ISO 3166-1 alpha-2, e.g. GB)",
        ),
        (
            "2.2.3.0/24 GB continent=XY",
            "unknown continent \"XY\" (expected one of AF, AN, AS, EU, NA, OC, SA)",
        ),
        (
            "2.2.3.0/24 GB city=Boxford",
            "unexpected \"city=Boxford\" (fields are continent=XX, lat=DEG, lon=DEG)",
        ),
        (
            "2.2.3.0/24 GB Boxford",
            "unexpected \"Boxford\" (fields are continent=XX, lat=DEG, lon=DEG)",
        ),
        (
            "2.2.3.0/24 GB continent=EU continent=AS",
            "continent given twice",
        ),
        (
            "2.2.3.0/24 GB lat=91 lon=0",
            "bad lat \"91\" (expected decimal degrees within ±90)",
        ),
        (
            "2.2.3.0/24 GB lat=1 lon=east",
            "bad lon \"east\" (expected decimal degrees within ±180)",
        ),
        (
            "2.2.3.0/24 GB lat=1 lon=NaN",
            "bad lon \"NaN\" (expected decimal degrees within ±180)",
        ),
        ("2.2.3.0/24 GB lat=51.75", "lat= and lon= go together"),
        (
            "2.2.3.0/24 -",
            "no country and no continent: `-` needs continent=XX",
        ),
    ];
    for (line, problem) in cases {
        // The bad line is line 3, after a comment and a good line.
        let source = format!("# header\n1.0.0.0/24 AU\n{line}  # trailing comment\n");
        let err = build_mmdb(&source, "geoip/sample.txt").unwrap_err();
        assert_eq!(err.to_string(), format!("geoip/sample.txt:3: {problem}"));
    }
}

#[test]
fn duplicate_network_names_both_lines() {
    let err = build_mmdb("2.2.3.0/24 GB\n\n2.2.3.0/24 FR\n", "dup.txt").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dup.txt:3: network 2.2.3.0/24 already given on line 1"
    );
}

#[test]
fn empty_source_is_an_error() {
    let err = build_mmdb("# only comments\n\n", "empty.txt").unwrap_err();
    assert_eq!(
        err.to_string(),
        "empty.txt: no networks (expected lines like `192.0.2.0/24  GB`)"
    );
}

#[test]
fn shipped_sample_maps_the_test_db_ranges_like_the_city_db() {
    let city = GeoDb::open(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/geoip/GeoIP2-City-Test.mmdb"
    )))
    .unwrap();
    let sample = GeoDb::open(Path::new(SAMPLE)).unwrap();
    for addr in [
        "2.2.3.1",
        "89.160.20.130",
        "214.78.120.1",
        "214.0.0.1",
        "175.16.199.1",
        "214.0.1.1",
        "202.196.224.1",
        "67.43.156.1",
        "81.2.69.161",
        "216.160.83.57",
    ] {
        let (want, got) = (city.lookup(ip(addr)), sample.lookup(ip(addr)));
        assert_eq!(
            (got.country, got.continent, got.found),
            (want.country, want.continent, true),
            "{addr}"
        );
    }
    // RFC 5737 documentation ranges map to three different continents.
    let continents: std::collections::BTreeSet<_> = ["192.0.2.1", "198.51.100.1", "203.0.113.1"]
        .into_iter()
        .map(|a| sample.lookup(ip(a)).continent.unwrap())
        .collect();
    assert_eq!(continents.len(), 3);
    assert!(sample.lookup(ip("2001:db8:1::1")).found);
    assert!(!sample.lookup(ip("127.0.0.1")).found);
}

#[test]
fn run_build_writes_a_readable_file_and_summary() {
    let dir = std::env::temp_dir().join(format!("meridian-geo-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("sample.mmdb");
    let summary = run_build(Path::new(SAMPLE), &out).unwrap();
    assert_eq!(
        summary.networks,
        summary.ipv4_networks + summary.ipv6_networks
    );
    assert!(
        summary.ipv4_networks >= 13 && summary.ipv6_networks >= 3,
        "{summary:?}"
    );
    assert_eq!(summary.bytes as u64, std::fs::metadata(&out).unwrap().len());
    assert!(
        summary
            .to_string()
            .starts_with(&format!("wrote {}: ", out.display())),
        "{summary}"
    );
    let db = GeoDb::open(&out).unwrap();
    assert_eq!(
        db.lookup(ip("2.2.3.1")).country,
        Some("GB".parse().unwrap())
    );
    assert!(!dir.join("sample.mmdb.tmp").exists());

    let missing = dir.join("nope.txt");
    let err = run_build(&missing, &out).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{err}"
    );
    let err = run_build(Path::new(SAMPLE), &dir.join("no/such/dir/x.mmdb"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no/such/dir/x.mmdb: cannot write: "), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Strict mode, as `tests/it/harness/system.rs` has it (lib unit tests cannot use the
/// integration harness): under CI (`CI` set, not `false`) or `MERIDIAN_SYSTEM_TESTS=1` (what
/// `.ci/run` exports) a second opinion must run, so a missing tool fails instead of skipping.
fn strict() -> bool {
    let on =
        |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    on("CI") || on("MERIDIAN_SYSTEM_TESTS")
}

#[test]
fn mmdblookup_reads_what_we_write_if_installed() {
    // Cross-check with libmaxminddb (apt: mmdb-bin) when it is on the machine; the
    // maxminddb-crate round trips above are the tests that always run. In strict mode
    // (.ci/run installs mmdb-bin) a missing mmdblookup is a failure, never a silent pass.
    let Ok(probe) = std::process::Command::new("mmdblookup")
        .arg("--version")
        .output()
    else {
        assert!(
            !strict(),
            "mmdblookup is not installed (strict mode: CI or MERIDIAN_SYSTEM_TESTS): \
             apt-get install mmdb-bin, as .ci/run does"
        );
        eprintln!(
            "note: mmdblookup is not installed (Debian package mmdb-bin); skipping the \
             libmaxminddb cross-check"
        );
        return;
    };
    assert!(probe.status.success());
    let dir = std::env::temp_dir().join(format!("meridian-geo-mmdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("x.mmdb");
    std::fs::write(
        &out,
        build_mmdb(
            "2.2.3.0/24 GB\n2001:db8:1::/48 JP lat=35.5 lon=139.75\n",
            "x",
        )
        .unwrap(),
    )
    .unwrap();
    let lookup = |addr: &str, path: &[&str]| {
        let o = std::process::Command::new("mmdblookup")
            .arg("-f")
            .arg(&out)
            .args(["-i", addr])
            .args(path)
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    assert!(lookup("2.2.3.1", &["country", "iso_code"]).contains("\"GB\""));
    assert!(lookup("2.2.3.1", &["continent", "code"]).contains("\"EU\""));
    assert!(lookup("2001:db8:1::9", &["location", "latitude"]).contains("35.5"));
    assert!(
        lookup("2.2.4.1", &[]).is_empty(),
        "not-found prints nothing on stdout"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
