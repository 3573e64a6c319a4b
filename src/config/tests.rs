//! Validation of zone files: one case per error `load.rs` can report, each a small zone written
//! to a temporary file, checked for the exact file, key and message; plus the master-file path
//! (`records_file`) and duplicate origins across files (`load_dir`).

use std::fs;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, RecordType};

use super::load::{ZoneError, load_dir, load_zone};

/// A valid zone's top: origin, apex NS and SOA. Cases append tables after it.
const BASE: &str = r#"
origin = "t.test."
ns = ["ns1.t.test."]
[soa]
mname = "ns1.t.test."
rname = "hostmaster.t.test."
serial = 1
"#;

/// Regions for service cases: two with a location, one without.
const REGIONS: &str = r#"
[region.eu]
location = [53.35, -6.26]
countries = ["GB"]
[region.us]
location = [39.04, -77.49]
continents = ["NA"]
[region.bare]
"#;

/// Writes `text` as `zone.toml` in a fresh directory; returns the directory (kept alive by the
/// caller) and the file's path.
fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zone.toml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

/// Loads `text` and returns the `Invalid` error's key and message, checking it names the file.
fn invalid(label: &str, text: &str) -> (String, String) {
    let (_dir, path) = write(text);
    match load_zone(&path) {
        Err(ZoneError::Invalid {
            path: p,
            key,
            message,
        }) => {
            assert_eq!(p, path, "{label}: error names the zone file");
            (key, message)
        }
        Err(other) => panic!("{label}: expected an invalid-value error, got {other:?}"),
        Ok(_) => panic!("{label}: the zone loaded, expected an error"),
    }
}

/// Runs a table of `(label, zone text, key, message)` cases.
fn check(cases: &[(&str, String, &str, String)]) {
    for (label, text, key, message) in cases {
        let (k, m) = invalid(label, text);
        assert_eq!(
            (k.as_str(), m.as_str()),
            (*key, message.as_str()),
            "{label}"
        );
    }
}

fn base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn with_regions(extra: &str) -> String {
    format!("{BASE}{REGIONS}{extra}")
}

/// A service `www`: `keys` in its table, endpoints 0 (`eu`) and 1 (`us`), then `tables`
/// (sub-tables or more endpoints, numbered from 2).
fn service(keys: &str, tables: &str) -> String {
    with_regions(&format!(
        r#"
[service.www]
{keys}
[[service.www.endpoint]]
region = "eu"
address = "192.0.2.1"
[[service.www.endpoint]]
region = "us"
address = "192.0.2.2"
{tables}"#
    ))
}

#[test]
fn the_base_zones_load() {
    for (label, text) in [
        ("base", BASE.to_string()),
        ("regions", with_regions("")),
        ("service", service("", "")),
    ] {
        let (_dir, path) = write(&text);
        let zone = load_zone(&path).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(zone.origin, Name::from_ascii("t.test.").unwrap());
    }
}

#[test]
fn the_example_zone_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.toml");
    let zone = load_zone(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(zone.services.len(), 2);
    assert_eq!(zone.regions.len(), 3);
}

#[test]
fn names_and_records_are_validated() {
    let supported =
        "A, AAAA, CAA, CNAME, DS, HTTPS, MX, NAPTR, NS, PTR, SRV, SSHFP, SVCB, TLSA, TXT";
    let cases: Vec<(&str, String, &str, String)> = vec![
        (
            "origin not absolute",
            BASE.replace("\"t.test.\"", "\"t.test\""),
            "origin",
            "`t.test` must be absolute (end with a dot)".into(),
        ),
        (
            "empty NS name",
            BASE.replace("[\"ns1.t.test.\"]", "[\"ns1.t.test.\", \"\"]"),
            "ns[1]",
            "empty name".into(),
        ),
        (
            "owner outside the zone",
            base("[[record]]\nname = \"www.other.test.\"\ntype = \"A\"\ndata = [\"192.0.2.1\"]\n"),
            "record[0].name",
            "`www.other.test.` is outside the zone t.test.".into(),
        ),
        (
            "unknown type (second record)",
            base(
                "[[record]]\nname = \"a\"\ntype = \"A\"\ndata = [\"192.0.2.1\"]\n\
                 [[record]]\nname = \"b\"\ntype = \"BOGUS\"\ndata = [\"x\"]\n",
            ),
            "record[1].type",
            "unknown record type `BOGUS`".into(),
        ),
        (
            "unsupported type",
            base("[[record]]\nname = \"a\"\ntype = \"HINFO\"\ndata = [\"x86 linux\"]\n"),
            "record[0].type",
            format!("type HINFO is not supported in [[record]] (supported: {supported})"),
        ),
        (
            "unsupported type: SOA belongs in [soa]",
            base("[[record]]\nname = \"@\"\ntype = \"soa\"\ndata = [\"x\"]\n"),
            "record[0].type",
            format!("type SOA is not supported in [[record]] (supported: {supported})"),
        ),
        (
            "apex NS in [[record]]",
            base("[[record]]\nname = \"@\"\ntype = \"NS\"\ndata = [\"ns2.t.test.\"]\n"),
            "record[0].type",
            "apex NS records belong in the zone's `ns` list".into(),
        ),
        (
            "empty data",
            base("[[record]]\nname = \"a\"\ntype = \"A\"\ndata = []\n"),
            "record[0].data",
            "needs at least one value".into(),
        ),
        (
            "TTL over the maximum",
            base(
                "[[record]]\nname = \"a\"\ntype = \"A\"\nttl = 2147483648\ndata = [\"192.0.2.1\"]\n",
            ),
            "record[0].ttl",
            "2147483648 is above the maximum TTL 2147483647".into(),
        ),
        (
            "zone TTL over the maximum",
            BASE.replace("ns = ", "ttl = 4294967295\nns = "),
            "ttl",
            "4294967295 is above the maximum TTL 2147483647".into(),
        ),
        (
            "SOA minimum over the maximum TTL",
            base("minimum = 2147483648\n"),
            "soa.minimum",
            "2147483648 is above the maximum TTL 2147483647".into(),
        ),
        (
            "SOA refresh above i32",
            base("refresh = 2147483648\n"),
            "soa.refresh",
            "2147483648 is above 2147483647".into(),
        ),
        (
            "missing SOA",
            "origin = \"t.test.\"\nns = [\"ns1.t.test.\"]\n".into(),
            "soa",
            "missing: give a [soa] table or an SOA in records_file".into(),
        ),
        (
            "no apex NS",
            BASE.replace("ns = [\"ns1.t.test.\"]", ""),
            "ns",
            "the zone has no apex NS records".into(),
        ),
        (
            "CNAME at the apex",
            base("[[record]]\nname = \"@\"\ntype = \"CNAME\"\ndata = [\"www\"]\n"),
            "record",
            "a CNAME cannot stand at the zone apex".into(),
        ),
        (
            "CNAME and other data",
            base(
                "[[record]]\nname = \"www\"\ntype = \"CNAME\"\ndata = [\"web\"]\n\
                 [[record]]\nname = \"www\"\ntype = \"TXT\"\ndata = ['\"x\"']\n",
            ),
            "record[1].data[0]",
            "www.t.test. has a CNAME (at record[0].data[0]) and other data (TXT at \
             record[1].data[0]); a CNAME stands alone (RFC 1034 §3.6.2)"
                .into(),
        ),
        (
            "RRset TTL mismatch",
            base(
                "[[record]]\nname = \"www\"\ntype = \"A\"\nttl = 300\ndata = [\"192.0.2.1\"]\n\
                 [[record]]\nname = \"www\"\ntype = \"A\"\nttl = 600\ndata = [\"192.0.2.2\"]\n",
            ),
            "record",
            "www.t.test. A has records with TTLs 300 and 600; an RRset has one TTL (RFC 2181 §5.2)"
                .into(),
        ),
    ];
    check(&cases);
}

#[test]
fn bad_rdata_names_the_value_and_type() {
    let text = base(
        "[[record]]\nname = \"a\"\ntype = \"A\"\ndata = [\"192.0.2.1\", \"not-an-ip\"]\n\
         [[record]]\nname = \"m\"\ntype = \"MX\"\ndata = [\"ten mail\"]\n",
    );
    let (key, message) = invalid("bad A", &text);
    assert_eq!(key, "record[0].data[1]");
    let detail = message
        .strip_prefix("bad A data `not-an-ip`: ")
        .unwrap_or_else(|| panic!("{message}"));
    assert!(!detail.is_empty(), "the parser's reason follows: {message}");

    let text = base("[[record]]\nname = \"t\"\ntype = \"TXT\"\ndata = ['\"open']\n");
    let (key, message) = invalid("bad TXT", &text);
    assert_eq!(key, "record[0].data[0]");
    assert_eq!(message, "bad TXT data `\"open`: unterminated quoted string");
}

#[test]
fn unknown_keys_are_rejected_with_key_and_line() {
    let cases = [
        (
            "top level",
            base("").replace("ns = ", "colour = \"red\"\nns = "),
            "colour",
        ),
        ("soa", base("refesh = 1\n"), "refesh"),
        (
            "record",
            base("[[record]]\nname = \"a\"\ntype = \"A\"\nvalue = 1\ndata = [\"192.0.2.1\"]\n"),
            "value",
        ),
        ("region", with_regions("lattitude = 1\n"), "lattitude"),
        ("service", service("weight = 3", ""), "weight"),
        (
            "geo",
            service("", "[service.www.geo]\ncountrys = {}\n"),
            "countrys",
        ),
        (
            "endpoint",
            service("", "").replace(
                "address = \"192.0.2.2\"",
                "address = \"192.0.2.2\"\nwieght = 5",
            ),
            "wieght",
        ),
    ];
    for (label, text, bad) in cases {
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(bad))
            .unwrap()
            + 1;
        let (_dir, path) = write(&text);
        match load_zone(&path) {
            Err(e @ ZoneError::Syntax { .. }) => {
                let ZoneError::Syntax { path: p, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(*p, path, "{label}");
                let shown = e.to_string();
                assert!(shown.contains(&format!("`{bad}`")), "{label}: {shown}");
                assert!(shown.contains(&format!("line {line}")), "{label}: {shown}");
            }
            other => panic!("{label}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn regions_are_validated() {
    let region = |body: &str| base(&format!("[region.r]\n{body}\n"));
    let cases: Vec<(&str, String, &str, String)> = vec![
        (
            "region name with a blank",
            base("[region.\"eu west\"]\n"),
            "region.eu west",
            "region names use letters, digits, `-` and `_` (at most 63)".into(),
        ),
        (
            "latitude out of range",
            region("location = [91.0, 0.0]"),
            "region.r.location",
            "[91, 0] is not a latitude in -90..90 and a longitude in -180..180".into(),
        ),
        (
            "longitude out of range",
            region("location = [10.5, -180.5]"),
            "region.r.location",
            "[10.5, -180.5] is not a latitude in -90..90 and a longitude in -180..180".into(),
        ),
        (
            "unknown country",
            region("countries = [\"GB\", \"XX\"]"),
            "region.r.countries[1]",
            "unknown country code `XX`".into(),
        ),
        (
            "lowercase country",
            region("countries = [\"gb\"]"),
            "region.r.countries[0]",
            "`gb` is not an ISO 3166 alpha-2 country code (two capital letters)".into(),
        ),
        (
            "three-letter country",
            region("countries = [\"GBR\"]"),
            "region.r.countries[0]",
            "`GBR` is not an ISO 3166 alpha-2 country code (two capital letters)".into(),
        ),
        (
            "unknown continent",
            region("continents = [\"EU\", \"XY\"]"),
            "region.r.continents[1]",
            "unknown continent code `XY` (one of AF AN AS EU NA OC SA)".into(),
        ),
        (
            "lowercase continent",
            region("continents = [\"eu\"]"),
            "region.r.continents[0]",
            "unknown continent code `eu` (one of AF AN AS EU NA OC SA)".into(),
        ),
    ];
    check(&cases);

    let long = "r".repeat(64);
    let (key, message) = invalid("region name too long", &base(&format!("[region.{long}]\n")));
    assert_eq!(key, format!("region.{long}"));
    assert_eq!(
        message,
        "region names use letters, digits, `-` and `_` (at most 63)"
    );
    // 63 is fine.
    let (_dir, path) = write(&base(&format!("[region.{}]\n", "r".repeat(63))));
    load_zone(&path).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn services_are_validated() {
    let endpoint =
        |addr: &str| format!("[[service.www.endpoint]]\nregion = \"eu\"\naddress = \"{addr}\"\n");
    let cases: Vec<(&str, String, &str, String)> = vec![
        (
            "wildcard service",
            with_regions(
                "[service.\"*\"]\n[[service.\"*\".endpoint]]\nregion = \"eu\"\naddress = \"192.0.2.1\"\n",
            ),
            "service.*",
            "a service name cannot be a wildcard".into(),
        ),
        (
            "service outside the zone",
            with_regions(
                "[service.\"www.other.test.\"]\n[[service.\"www.other.test.\".endpoint]]\n\
                 region = \"eu\"\naddress = \"192.0.2.1\"\n",
            ),
            "service.www.other.test.",
            "`www.other.test.` is outside the zone t.test.".into(),
        ),
        (
            "service TTL over the maximum",
            service("ttl = 2147483648", ""),
            "service.www.ttl",
            "2147483648 is above the maximum TTL 2147483647".into(),
        ),
        (
            "answers 0",
            service("answers = 0", ""),
            "service.www.answers",
            "0 is not between 1 and 16".into(),
        ),
        (
            "answers 17",
            service("answers = 17", ""),
            "service.www.answers",
            "17 is not between 1 and 16".into(),
        ),
        (
            "unknown check",
            service("check = \"web\"", ""),
            "service.www.check",
            "unknown check `web` (declare it as [check.web])".into(),
        ),
        (
            "bad fallback mode",
            service("fallback = \"some\"", ""),
            "service.www.fallback",
            "`some` is not `all`, `none` or a list of addresses".into(),
        ),
        (
            "bad fallback address",
            service("fallback = [\"192.0.2.9\", \"1.2.3\"]", ""),
            "service.www.fallback[1]",
            "`1.2.3` is not an IP address".into(),
        ),
        (
            "empty fallback list",
            service("fallback = []", ""),
            "service.www.fallback",
            "an empty list; use \"none\" to answer nothing".into(),
        ),
        (
            "no endpoints",
            with_regions("[service.www]\npolicy = \"weighted\"\n"),
            "service.www",
            "has no endpoints ([[service.NAME.endpoint]])".into(),
        ),
        (
            "duplicate endpoint",
            service("", &endpoint("192.0.2.2")),
            "service.www.endpoint[2].address",
            "endpoint 192.0.2.2 is listed twice".into(),
        ),
        (
            "duplicate IPv6 endpoint, spelt differently",
            service(
                "",
                &format!("{}{}", endpoint("2001:db8::1"), endpoint("2001:DB8:0::0:1")),
            ),
            "service.www.endpoint[3].address",
            "endpoint 2001:db8::1 is listed twice".into(),
        ),
        (
            "weight over 1000",
            service("", "").replace(
                "address = \"192.0.2.2\"",
                "address = \"192.0.2.2\"\nweight = 1001",
            ),
            "service.www.endpoint[1].weight",
            "1001 is not between 0 and 1000".into(),
        ),
        (
            "bad address",
            service("", &endpoint("300.1.1.1")),
            "service.www.endpoint[2].address",
            "`300.1.1.1` is not an IP address".into(),
        ),
        (
            "bad probe_address",
            service("", "").replace(
                "address = \"192.0.2.2\"",
                "address = \"192.0.2.2\"\nprobe_address = \"10.0.0\"",
            ),
            "service.www.endpoint[1].probe_address",
            "`10.0.0` is not an IP address".into(),
        ),
        (
            "unknown policy",
            service("policy = \"random\"", ""),
            "service.www.policy",
            "unknown policy `random` (geo, nearest, failover or weighted)".into(),
        ),
        (
            "geo table with another policy",
            service(
                "policy = \"weighted\"",
                "[service.www.geo]\ndefault = [\"eu\"]\n",
            ),
            "service.www.geo",
            "only used by policy = \"geo\", not \"weighted\"".into(),
        ),
        (
            "failover list with another policy",
            service("policy = \"nearest\"\nfailover = [\"eu\", \"us\"]", ""),
            "service.www.failover",
            "only used by policy = \"failover\", not \"nearest\"".into(),
        ),
        (
            "failover list next to a geo table (policy geo by default)",
            service("failover = [\"eu\", \"us\"]", "[service.www.geo]\n"),
            "service.www.failover",
            "only used by policy = \"failover\", not \"geo\"".into(),
        ),
        (
            "failover without a list",
            service("policy = \"failover\"", ""),
            "service.www.failover",
            "policy = \"failover\" needs an ordered region list".into(),
        ),
        (
            "nearest with a region without location",
            service("policy = \"nearest\"", "").replace("region = \"us\"", "region = \"bare\""),
            "region.bare.location",
            "needed by service `www` (policy = \"nearest\")".into(),
        ),
        (
            "service clashes with a static record",
            service("", "").replace(
                "[service.www]",
                "[[record]]\nname = \"www\"\ntype = \"TXT\"\ndata = ['\"x\"']\n[service.www]",
            ),
            "service.www",
            "www.t.test. is also a static TXT record; a name is either a service or static data"
                .into(),
        ),
    ];
    check(&cases);
}

#[test]
fn region_references_are_validated() {
    let geo = |table: &str| service("", &format!("[service.www.geo]\n{table}\n"));
    let cases: Vec<(&str, String, &str, String)> = vec![
        (
            "unknown region in geo.default",
            geo("default = [\"eu\", \"nowhere\"]"),
            "service.www.geo.default[1]",
            "unknown region `nowhere` (declare it as [region.nowhere])".into(),
        ),
        (
            "unknown region in geo.country",
            geo("country.GB = [\"mars\"]"),
            "service.www.geo.country.GB[0]",
            "unknown region `mars` (declare it as [region.mars])".into(),
        ),
        (
            "unknown region in geo.continent",
            geo("continent.EU = [\"eu\", \"mars\"]"),
            "service.www.geo.continent.EU[1]",
            "unknown region `mars` (declare it as [region.mars])".into(),
        ),
        (
            "unknown region in geo.subnet",
            geo("subnet.\"192.0.2.0/24\" = [\"mars\"]"),
            "service.www.geo.subnet.\"192.0.2.0/24\"[0]",
            "unknown region `mars` (declare it as [region.mars])".into(),
        ),
        (
            "unknown region in the failover list",
            service("failover = [\"us\", \"mars\"]", ""),
            "service.www.failover[1]",
            "unknown region `mars` (declare it as [region.mars])".into(),
        ),
        (
            "region listed twice in geo.default",
            geo("default = [\"eu\", \"us\", \"eu\"]"),
            "service.www.geo.default[2]",
            "region `eu` is listed twice".into(),
        ),
        (
            "region listed twice in the failover list",
            service("failover = [\"us\", \"us\"]", ""),
            "service.www.failover[1]",
            "region `us` is listed twice".into(),
        ),
        (
            "unknown country in geo.country",
            geo("country.XX = [\"eu\"]"),
            "service.www.geo.country.XX",
            "unknown country code `XX`".into(),
        ),
        (
            "lowercase country in geo.country",
            geo("country.gb = [\"eu\"]"),
            "service.www.geo.country.gb",
            "`gb` is not an ISO 3166 alpha-2 country code (two capital letters)".into(),
        ),
        (
            "lowercase continent in geo.continent",
            geo("continent.eu = [\"eu\"]"),
            "service.www.geo.continent.eu",
            "unknown continent code `eu` (one of AF AN AS EU NA OC SA)".into(),
        ),
        (
            "bad CIDR",
            geo("subnet.\"10.0.0.0/33\" = [\"eu\"]"),
            "service.www.geo.subnet.\"10.0.0.0/33\"",
            "`10.0.0.0/33` is not a CIDR prefix".into(),
        ),
        (
            "CIDR without a prefix length",
            geo("subnet.\"10.0.0.0\" = [\"eu\"]"),
            "service.www.geo.subnet.\"10.0.0.0\"",
            "`10.0.0.0` is not a CIDR prefix".into(),
        ),
        (
            "CIDR with host bits",
            geo("subnet.\"10.1.2.3/8\" = [\"eu\"]"),
            "service.www.geo.subnet.\"10.1.2.3/8\"",
            "`10.1.2.3/8` has bits set past the prefix; did you mean 10.0.0.0/8?".into(),
        ),
        (
            "IPv6 CIDR with host bits",
            geo("subnet.\"2001:db8::1/32\" = [\"eu\"]"),
            "service.www.geo.subnet.\"2001:db8::1/32\"",
            "`2001:db8::1/32` has bits set past the prefix; did you mean 2001:db8::/32?".into(),
        ),
    ];
    check(&cases);
}

/// The endpoint's `region` is a single name, so an error about it names `…region`, not an
/// element of a list (STYLE.md: messages say what and where, as the operator wrote it).
#[test]
fn unknown_endpoint_region_names_the_key_as_written() {
    let text = service("", "").replace("region = \"us\"", "region = \"mars\"");
    let (key, message) = invalid("unknown endpoint region", &text);
    assert_eq!(key, "service.www.endpoint[1].region");
    assert_eq!(
        message,
        "unknown region `mars` (declare it as [region.mars])"
    );
}

#[test]
fn unknown_endpoint_region_is_rejected() {
    let text = service("", "").replace("region = \"us\"", "region = \"mars\"");
    let (key, message) = invalid("unknown endpoint region", &text);
    assert!(key.starts_with("service.www.endpoint[1].region"), "{key}");
    assert_eq!(
        message,
        "unknown region `mars` (declare it as [region.mars])"
    );
}

#[test]
fn records_file_supplies_soa_and_ns() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("t.test.zone"),
        "$ORIGIN t.test.\n$TTL 1800\n\
         @ IN SOA ns1 hostmaster (\n  2026112599 7200 3600 1209600 120 )\n\
         @ IN NS ns1\n\
         ns1 IN A 192.0.2.53\n\
         www 300 IN A 192.0.2.80\n",
    )
    .unwrap();
    let path = dir.path().join("t.test.toml");
    fs::write(
        &path,
        "origin = \"t.test.\"\nrecords_file = \"t.test.zone\"\n",
    )
    .unwrap();
    let zone = load_zone(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(zone.serial(), 2026112599);
    let RData::SOA(soa) = &zone.soa.data else {
        panic!("{:?}", zone.soa)
    };
    assert_eq!(soa.minimum, 120);
    assert_eq!(soa.mname, Name::from_ascii("ns1.t.test.").unwrap());
    let origin = Name::from_ascii("t.test.").unwrap();
    let ns: Vec<_> = zone.records_of(&origin, RecordType::NS).collect();
    assert_eq!(ns.len(), 1, "{:?}", zone.records);
    let www = Name::from_ascii("www.t.test.").unwrap();
    let a: Vec<_> = zone.records_of(&www, RecordType::A).collect();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].ttl, 300);
    assert_eq!(zone.record_count(), 4, "SOA, NS, ns1 A, www A");
}

#[test]
fn records_file_errors_name_the_master_file() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("t.test.toml");

    // A syntax error in the master file: the error names the .zone file, not the TOML.
    let zone_file = dir.path().join("t.test.zone");
    fs::write(
        &zone_file,
        "$ORIGIN t.test.\n@ 3600 IN SOA ns1 hostmaster 1 2 3 4 5\n@ 3600 IN NS ns1\nwww 300 IN A 999.1.1.1\n",
    )
    .unwrap();
    fs::write(
        &toml,
        "origin = \"t.test.\"\nrecords_file = \"t.test.zone\"\n",
    )
    .unwrap();
    match load_zone(&toml) {
        Err(e @ ZoneError::MasterFile { .. }) => {
            let ZoneError::MasterFile { path, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*path, zone_file);
            assert!(
                e.to_string()
                    .starts_with(&format!("{}: ", zone_file.display()))
            );
        }
        other => panic!("expected a master-file error, got {other:?}"),
    }

    // A record outside the zone.
    fs::write(
        &zone_file,
        "$ORIGIN t.test.\n@ 3600 IN SOA ns1 hostmaster 1 2 3 4 5\n@ 3600 IN NS ns1\nwww.other.test. 300 IN A 192.0.2.1\n",
    )
    .unwrap();
    match load_zone(&toml) {
        Err(ZoneError::MasterFile { path, message }) => {
            assert_eq!(path, zone_file);
            assert_eq!(message, "www.other.test. is outside the zone t.test.");
        }
        other => panic!("expected a master-file error, got {other:?}"),
    }

    // The SOA both in the master file and as [soa].
    fs::write(
        &zone_file,
        "$ORIGIN t.test.\n@ 3600 IN SOA ns1 hostmaster 1 2 3 4 5\n@ 3600 IN NS ns1\n",
    )
    .unwrap();
    fs::write(
        &toml,
        "origin = \"t.test.\"\nrecords_file = \"t.test.zone\"\n[soa]\nmname = \"ns1\"\nrname = \"h\"\nserial = 1\n",
    )
    .unwrap();
    match load_zone(&toml) {
        Err(ZoneError::Invalid { path, key, message }) => {
            assert_eq!(path, toml);
            assert_eq!(key, "soa");
            assert_eq!(message, "the SOA is given both here and in records_file");
        }
        other => panic!("expected SOA twice, got {other:?}"),
    }

    // A records_file that does not exist: the error names it.
    fs::write(
        &toml,
        "origin = \"t.test.\"\nrecords_file = \"missing.zone\"\n",
    )
    .unwrap();
    match load_zone(&toml) {
        Err(ZoneError::Read { path, .. }) => assert_eq!(path, dir.path().join("missing.zone")),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn load_dir_rejects_a_duplicate_origin() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    fs::write(&a, BASE).unwrap();
    // Names compare case-insensitively: `T.Test.` is the same zone.
    fs::write(
        &b,
        BASE.replace("origin = \"t.test.\"", "origin = \"T.Test.\""),
    )
    .unwrap();
    // Not a zone file: ignored.
    fs::write(dir.path().join("notes.txt"), "origin = 1").unwrap();
    match load_dir(dir.path()) {
        Err(e @ ZoneError::DuplicateOrigin { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "{}: origin t.test. is already served by {}",
                b.display(),
                a.display()
            )
        ),
        other => panic!("expected a duplicate origin, got {other:?}"),
    }

    fs::write(&b, BASE.replace("t.test.", "u.test.")).unwrap();
    let zones = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let origins: Vec<String> = zones.iter().map(|z| z.origin.to_string()).collect();
    assert_eq!(origins, ["t.test.", "u.test."], "sorted by file name");
}

/// `zones/example.toml` and `model::Zone::regions` promise file order ("Regions not listed
/// follow in file order", "Default: every region, file order"), and the geo default list and
/// every failover tail are built from that order. The TOML is read into a `BTreeMap`, so the
/// regions come out sorted by name instead: a zone declaring `us-east` before `eu-west` sends
/// unmatched clients to `eu-west` first.
#[test]
fn regions_keep_file_order() {
    let text = base("[region.us-east]\n[region.eu-west]\n[region.ap-south]\n");
    let (_dir, path) = write(&text);
    let zone = load_zone(&path).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = zone.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["us-east", "eu-west", "ap-south"]);
}

#[test]
fn malformed_names_and_files_are_reported() {
    // A label over 63 bytes: the parser's reason follows the name.
    let long = format!("{}.test.", "a".repeat(64));
    let (key, message) = invalid(
        "origin label too long",
        &BASE.replace("origin = \"t.test.\"", &format!("origin = \"{long}\"")),
    );
    assert_eq!(key, "origin");
    assert!(message.starts_with(&format!("`{long}`: ")), "{message}");

    let (key, message) = invalid(
        "bad NS name",
        &BASE.replace("[\"ns1.t.test.\"]", "[\"ns1..t.test.\"]"),
    );
    assert_eq!(key, "ns[0]");
    assert!(message.starts_with("`ns1..t.test.`: "), "{message}");

    // A wrong type is a syntax error naming the key.
    let (_dir, path) = write(&BASE.replace("serial = 1", "serial = \"one\""));
    match load_zone(&path) {
        Err(e @ ZoneError::Syntax { .. }) => assert!(e.to_string().contains("serial"), "{e}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }

    // An SOA in records_file that is not at the origin.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("t.test.zone"),
        "$ORIGIN t.test.\nsub 3600 IN SOA ns1 hostmaster 1 2 3 4 5\n@ 3600 IN NS ns1\n",
    )
    .unwrap();
    let toml = dir.path().join("t.test.toml");
    fs::write(
        &toml,
        "origin = \"t.test.\"\nrecords_file = \"t.test.zone\"\n",
    )
    .unwrap();
    match load_zone(&toml) {
        Err(ZoneError::Invalid { path, key, message }) => {
            assert_eq!((path, key.as_str()), (toml.clone(), "records_file"));
            assert_eq!(message, "SOA owner sub.t.test. is not the origin t.test.");
        }
        other => panic!("expected a bad SOA owner, got {other:?}"),
    }

    // Missing zone file and missing directory: read errors naming them.
    let missing = dir.path().join("nope.toml");
    match load_zone(&missing) {
        Err(ZoneError::Read { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected a read error, got {other:?}"),
    }
    let missing_dir = dir.path().join("nodir");
    match load_dir(&missing_dir) {
        Err(ZoneError::Read { path, .. }) => assert_eq!(path, missing_dir),
        other => panic!("expected a read error, got {other:?}"),
    }
}

/// Writes `t.test.toml` (BASE's SOA kept out: the master file has it) naming `t.test.zone`
/// with `zone` as its text, plus `extra` TOML; returns the directory, TOML and master paths.
fn with_master(zone: &str, extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("t.test.toml");
    let master = dir.path().join("t.test.zone");
    fs::write(
        &master,
        format!(
            "$ORIGIN t.test.\n@ 3600 IN SOA ns1 hostmaster 1 2 3 4 5\n@ 3600 IN NS ns1\n{zone}"
        ),
    )
    .unwrap();
    fs::write(
        &toml,
        format!("origin = \"t.test.\"\nrecords_file = \"t.test.zone\"\n{extra}"),
    )
    .unwrap();
    (dir, toml, master)
}

/// Loads a zone expected to fail on a master-file line; returns that line and the message.
fn master_line_error(label: &str, toml: &Path, master: &Path) -> (usize, String) {
    match load_zone(toml) {
        Err(e @ ZoneError::MasterLine { .. }) => {
            let shown = e.to_string();
            let ZoneError::MasterLine {
                path,
                line,
                message,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(path, master, "{label}: names the master file");
            assert!(
                shown.starts_with(&format!("{}:{line}: ", master.display())),
                "{label}: {shown}"
            );
            (line, message)
        }
        other => panic!("{label}: expected an error on a master-file line, got {other:?}"),
    }
}

/// `count` TXT values of `size` bytes each, quoted for TOML (literal strings).
fn txt_values(count: usize, size: usize) -> String {
    (0..count)
        .map(|i| format!("'\"{i:04}{}\"'", "x".repeat(size - 4)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn an_rrset_too_large_for_one_message_is_rejected() {
    // 70 TXT records of 1,000 bytes at big.t.test.: owner 12 + fixed 10 + RDATA 1,004 (four
    // character-strings) = 1,026 bytes each, 71,820 in all; no DNS message can carry them.
    let limit = super::model::MAX_RRSET_WIRE;
    assert_eq!(limit, 65_535 - 12 - 259 - 35);
    let text = base(&format!(
        "[[record]]\nname = \"a\"\ntype = \"A\"\ndata = [\"192.0.2.1\"]\n\
         [[record]]\nname = \"big\"\ntype = \"TXT\"\ndata = [{}]\n",
        txt_values(70, 1000)
    ));
    let (key, message) = invalid("70 KB TXT RRset", &text);
    assert_eq!(key, "record[1]");
    assert_eq!(
        message,
        format!(
            "big.t.test. TXT is 71820 bytes in wire form; an RRset must fit one DNS message \
             (at most {limit} bytes)"
        )
    );

    // Split over two [[record]] tables: still one RRset; the first table is named.
    let text = base(&format!(
        "[[record]]\nname = \"big\"\ntype = \"TXT\"\ndata = [{}]\n\
         [[record]]\nname = \"big\"\ntype = \"TXT\"\ndata = [{}]\n",
        txt_values(35, 1000),
        txt_values(35, 1000).replace("'\"00", "'\"10"),
    ));
    let (key, message) = invalid("split RRset", &text);
    assert_eq!(key, "record[0]");
    assert!(
        message.starts_with("big.t.test. TXT is 71820 bytes"),
        "{message}"
    );

    // Just under the limit loads: 63 records of 1,026 bytes = 64,638.
    let (_dir, path) = write(&base(&format!(
        "[[record]]\nname = \"big\"\ntype = \"TXT\"\ndata = [{}]\n",
        txt_values(63, 1000)
    )));
    load_zone(&path).unwrap_or_else(|e| panic!("64 KB RRset: {e}"));

    // The same 70 records in the master file: the error names the file and the first line.
    let lines: String = (0..70)
        .map(|i| {
            format!(
                "big 300 IN TXT \"{i:04}{}\" {}\n",
                "x".repeat(246),
                quarters()
            )
        })
        .collect();
    let (_dir, toml, master) = with_master(&format!("www 300 IN A 192.0.2.1\n{lines}"), "");
    let (line, message) = master_line_error("master file", &toml, &master);
    assert_eq!(line, 5);
    assert_eq!(
        message,
        format!(
            "big.t.test. TXT is 71820 bytes in wire form; an RRset must fit one DNS message \
             (at most {limit} bytes)"
        )
    );
}

#[test]
fn a_service_below_a_delegation_is_rejected() {
    let text = service("", "").replace(
        "[service.www]",
        "[[record]]\nname = \"sub\"\ntype = \"NS\"\ndata = [\"ns.elsewhere.test.\"]\n\
         [service.\"www.sub\"]",
    );
    let text = text.replace("service.www.endpoint", "service.\"www.sub\".endpoint");
    let (key, message) = invalid("service under a cut", &text);
    assert_eq!(key, "service.www.sub");
    assert_eq!(
        message,
        "www.sub.t.test. is below the delegation sub.t.test. (NS record[0]); a service must be \
         in the zone's own data, where it is answered rather than referred"
    );
    // Deeper below, and a cut given in the master file.
    let (_dir, toml, _master) = with_master(
        "sub 300 IN NS ns.elsewhere.test.\n",
        &format!(
            "{REGIONS}[service.\"a.b.sub\"]\n[[service.\"a.b.sub\".endpoint]]\nregion = \"eu\"\naddress = \"192.0.2.1\"\n"
        ),
    );
    match load_zone(&toml) {
        Err(ZoneError::Invalid { key, message, .. }) => {
            assert_eq!(key, "service.a.b.sub");
            assert_eq!(
                message,
                "a.b.sub.t.test. is below the delegation sub.t.test. (NS t.test.zone:4); a \
                 service must be in the zone's own data, where it is answered rather than referred"
            );
        }
        other => panic!("expected a service under a cut, got {other:?}"),
    }
}

#[test]
fn a_class_other_than_in_in_the_master_file_is_rejected() {
    let (_dir, toml, master) = with_master(
        "www 300 IN A 192.0.2.1\nversion 300 CH TXT \"1.0\"\nother 300 TXT \"sticky class\"\n",
        "",
    );
    let (line, message) = master_line_error("CH record", &toml, &master);
    assert_eq!(line, 5);
    assert_eq!(message, "class CH: only class IN is served");

    // The class may come before the TTL; a multi-line entry is named by its first line.
    let (_dir, toml, master) =
        with_master("www 300 IN A 192.0.2.1\n\nx HS 300 TXT (\n \"y\" )\n", "");
    let (line, message) = master_line_error("HS record", &toml, &master);
    assert_eq!(
        (line, message.as_str()),
        (6, "class HS: only class IN is served")
    );
}

#[test]
fn two_cnames_at_one_name_are_rejected() {
    // In the master file: today the parser keeps only the last one, silently.
    let (_dir, toml, master) = with_master(
        "www 300 IN CNAME a.example.\n; comment\nwww 300 IN CNAME b.example.\n",
        "",
    );
    let (line, message) = master_line_error("two CNAME lines", &toml, &master);
    assert_eq!(line, 6);
    assert_eq!(
        message,
        "www.t.test. has a second CNAME (the first is at t.test.zone:4); a name has one CNAME \
         (RFC 1034 §3.6.2, RFC 2181 §10.1)"
    );

    // A CNAME and other data in the master file: both lines named.
    let (_dir, toml, master) =
        with_master("www 300 IN CNAME a.example.\nwww 300 IN A 192.0.2.1\n", "");
    let (line, message) = master_line_error("CNAME and A", &toml, &master);
    assert_eq!(line, 5);
    assert_eq!(
        message,
        "www.t.test. has a CNAME (at t.test.zone:4) and other data (A at t.test.zone:5); a \
         CNAME stands alone (RFC 1034 §3.6.2)"
    );

    // In TOML: two values in one table, and two tables.
    let cases: Vec<(&str, String, &str, String)> = vec![
        (
            "two values",
            base(
                "[[record]]\nname = \"www\"\ntype = \"CNAME\"\ndata = [\"a.example.\", \"b.example.\"]\n",
            ),
            "record[0].data[1]",
            "www.t.test. has a second CNAME (the first is at record[0].data[0]); a name has one \
             CNAME (RFC 1034 §3.6.2, RFC 2181 §10.1)"
                .into(),
        ),
        (
            "two tables",
            base(
                "[[record]]\nname = \"www\"\ntype = \"CNAME\"\ndata = [\"a.example.\"]\n\
                 [[record]]\nname = \"WWW\"\ntype = \"CNAME\"\ndata = [\"b.example.\"]\n",
            ),
            "record[1].data[0]",
            "www.t.test. has a second CNAME (the first is at record[0].data[0]); a name has one \
             CNAME (RFC 1034 §3.6.2, RFC 2181 §10.1)"
                .into(),
        ),
    ];
    check(&cases);

    // One in the master file, one in TOML.
    let (_dir, toml, _master) = with_master(
        "www 300 IN CNAME a.example.\n",
        "[[record]]\nname = \"www\"\ntype = \"CNAME\"\nttl = 300\ndata = [\"b.example.\"]\n",
    );
    match load_zone(&toml) {
        Err(ZoneError::Invalid { key, message, .. }) => {
            assert_eq!(key, "record[0].data[0]");
            assert!(
                message
                    .starts_with("www.t.test. has a second CNAME (the first is at t.test.zone:4)"),
                "{message}"
            );
        }
        other => panic!("expected two CNAMEs, got {other:?}"),
    }
}

#[test]
fn quoted_values_in_messages_are_cut() {
    let long = "x".repeat(70_000);
    let cases = [
        (
            "A data",
            base(&format!(
                "[[record]]\nname = \"a\"\ntype = \"A\"\ndata = [\"1{long}\"]\n"
            )),
            "record[0].data[0]",
        ),
        (
            "one 70 KB TXT value",
            base(&format!(
                "[[record]]\nname = \"t\"\ntype = \"TXT\"\ndata = ['\"{long}\"']\n"
            )),
            "record[0].data[0]",
        ),
        (
            "record type",
            base(&format!(
                "[[record]]\nname = \"a\"\ntype = \"{long}\"\ndata = [\"x\"]\n"
            )),
            "record[0].type",
        ),
        (
            "owner",
            base(&format!(
                "[[record]]\nname = \"{long}\"\ntype = \"A\"\ndata = [\"192.0.2.1\"]\n"
            )),
            "record[0].name",
        ),
        (
            "check path",
            base(&format!(
                "[check.web]\ntype = \"http\"\npath = \"{long}\"\n"
            )),
            "check.web.path",
        ),
    ];
    for (label, text, key) in cases {
        let (k, message) = invalid(label, &text);
        assert_eq!(k, key, "{label}: {message}");
        assert!(
            message.len() < 400 && message.contains('…'),
            "{label}: {} bytes: {}",
            message.len(),
            message.get(..400).unwrap_or(&message)
        );
    }
    // The same in the master file's parser messages and in TOML syntax errors.
    let (_dir, toml, master) = with_master(&format!("www 300 IN A 1{long}\n"), "");
    let e = load_zone(&toml).unwrap_err().to_string();
    assert!(
        e.contains(&*master.to_string_lossy()),
        "{}",
        e.get(..400).unwrap_or(&e)
    );
    assert!(e.len() < 600, "{} bytes", e.len());
    let (_dir, path) = write(&base(&format!(
        "[[record]]\nname = \"t\"\ntype = \"TXT\"\ndata = ['{long}\n"
    )));
    let e = load_zone(&path).unwrap_err().to_string();
    assert!(
        e.len() < 600,
        "{} bytes: {}",
        e.len(),
        e.get(..600).unwrap_or(&e)
    );
}

#[test]
fn mx_ns_and_srv_targets_that_are_cnames_are_linted() {
    let text = base(
        "[[record]]\nname = \"mail\"\ntype = \"CNAME\"\ndata = [\"mx.elsewhere.test.\"]\n\
         [[record]]\nname = \"@\"\ntype = \"MX\"\ndata = [\"10 mail\", \"20 mx2\"]\n\
         [[record]]\nname = \"mx2\"\ntype = \"A\"\ndata = [\"192.0.2.2\"]\n\
         [[record]]\nname = \"sub\"\ntype = \"NS\"\ndata = [\"mail.t.test.\"]\n\
         [[record]]\nname = \"_sip._udp\"\ntype = \"SRV\"\ndata = [\"0 5 5060 mail\"]\n",
    );
    let (_dir, path) = write(&text);
    let zone = load_zone(&path).unwrap_or_else(|e| panic!("a lint is not an error: {e}"));
    let shown: Vec<String> = super::lint(std::slice::from_ref(&zone))
        .iter()
        .map(ToString::to_string)
        .collect();
    let file = path.display();
    assert_eq!(
        shown,
        [
            format!(
                "{file}: t.test. MX: mail.t.test. is a CNAME; an MX target must not be an alias (RFC 2181 §10.3)"
            ),
            format!(
                "{file}: sub.t.test. NS: mail.t.test. is a CNAME; an NS target must not be an alias (RFC 2181 §10.3)"
            ),
            format!(
                "{file}: _sip._udp.t.test. SRV: mail.t.test. is a CNAME; an SRV target must not be an alias (RFC 2181 §10.3)"
            ),
        ]
    );
    // A target that is a CNAME in another zone checked together is found too; none in a clean zone.
    let (_dir2, other) = write(&BASE.replace("t.test.", "o.test.").replace(
        "serial = 1\n",
        "serial = 1\n[[record]]\nname = \"@\"\ntype = \"MX\"\ndata = [\"10 mail.t.test.\"]\n",
    ));
    let other = load_zone(&other).unwrap();
    assert_eq!(super::lint(&[zone.clone(), other.clone()]).len(), 4);
    assert!(super::lint(&[other]).is_empty());
}

/// Three more 250-byte character-strings: with a 250-byte first one, 1,000 bytes of TXT
/// (a master-file string holds at most 255).
fn quarters() -> String {
    format!("\"{0}\" \"{0}\" \"{0}\"", "x".repeat(250))
}

#[test]
fn service_health_options() {
    let (_dir, path) = write(&service(
        "slow_start = \"60s\"\ndynamic_ttl = true\nmin_ttl = 10\nttl = 60",
        "",
    ));
    let zone = load_zone(&path).unwrap();
    let h = &zone.services[0].health;
    assert_eq!(h.slow_start, Some(std::time::Duration::from_secs(60)));
    assert!(h.dynamic_ttl);
    assert_eq!(h.min_ttl, 10);
    let (_dir, path) = write(&service("", ""));
    let h = load_zone(&path).unwrap().services[0].health.clone();
    assert_eq!(
        (h.slow_start, h.dynamic_ttl, h.min_ttl),
        (None, false, crate::config::model::DEFAULT_MIN_TTL)
    );
    check(&[
        (
            "min_ttl above ttl",
            service("ttl = 30\nmin_ttl = 60", ""),
            "service.www.min_ttl",
            "60 is above the service's ttl (30)".into(),
        ),
        (
            "slow_start too long",
            service("slow_start = \"2h\"", ""),
            "service.www.slow_start",
            "`2h`: unit must be ms, s or m".into(),
        ),
        (
            "slow_start zero",
            service("slow_start = 0", ""),
            "service.www.slow_start",
            "0ns is not between 1ms and 3600s".into(),
        ),
    ]);
}

/// `text` (a TOML zone) in the JSON form of the same schema.
fn to_json(text: &str) -> String {
    let value: toml::Value = toml::from_str(text).unwrap();
    serde_json::to_string_pretty(&value).unwrap()
}

/// A zone using most of the schema: records, regions, a check and services of every policy.
fn full_zone() -> String {
    base(&format!(
        "{REGIONS}\
         [check.web]\ntype = \"http\"\npath = \"/health\"\nexpect_status = [200, \"300-399\"]\n\
         [[record]]\nname = \"mail\"\ntype = \"MX\"\ndata = [\"10 mx.t.test.\"]\n\
         [service.www]\npolicy = \"geo\"\ncheck = \"web\"\nfallback = [\"192.0.2.99\"]\n\
         [service.www.geo]\ndefault = [\"us\", \"eu\"]\ncountry = {{ GB = [\"eu\"] }}\n\
         subnet = {{ \"10.0.0.0/8\" = [\"us\"] }}\n\
         [[service.www.endpoint]]\nregion = \"eu\"\naddress = \"192.0.2.1\"\nweight = 5\n\
         [[service.www.endpoint]]\nregion = \"us\"\naddress = \"2001:db8::1\"\nprobe_port = 8080\n\
         [service.api]\nfailover = [\"us\", \"eu\"]\nslow_start = \"30s\"\n\
         [[service.api.endpoint]]\nregion = \"us\"\naddress = \"192.0.2.2\"\n\
         [[service.api.endpoint]]\nregion = \"eu\"\naddress = \"192.0.2.3\"\n"
    ))
}

/// Everything of a zone but the file it came from, for comparing two loads.
fn shape(zone: &super::Zone) -> String {
    let mut zone = zone.clone();
    zone.file = PathBuf::new();
    zone.fingerprint = None;
    zone.stamp = Default::default();
    format!("{zone:?}")
}

#[test]
fn a_json_zone_file_loads_like_the_same_zone_in_toml() {
    let text = full_zone();
    let (_dir, toml_path) = write(&text);
    let from_toml = load_zone(&toml_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("zone.json");
    fs::write(&json_path, to_json(&text)).unwrap();
    let from_json = load_zone(&json_path).unwrap();
    assert_eq!(from_json.file, json_path);
    assert_eq!(from_json.services.len(), 2);
    assert_eq!(shape(&from_json), shape(&from_toml));
}

#[test]
fn json_syntax_and_schema_errors_name_file_line_and_column() {
    // (label, JSON, what the message must contain)
    let good = to_json(&full_zone());
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "unknown key",
            good.replacen("\"serial\": 1", "\"serial\": 1,\n    \"sreial\": 2", 1),
            vec!["unknown field `sreial`".into()],
        ),
        (
            "wrong type",
            good.replacen("\"serial\": 1", "\"serial\": \"one\"", 1),
            vec!["invalid type: string \"one\"".into()],
        ),
        (
            "broken syntax",
            good.replacen("\"serial\": 1", "\"serial\": 1,,", 1),
            vec![],
        ),
        (
            "missing origin",
            "{}".into(),
            vec!["missing field `origin`".into()],
        ),
    ];
    for (label, text, wanted) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zone.json");
        fs::write(&path, &text).unwrap();
        let err = load_zone(&path).unwrap_err();
        let ZoneError::Json { path: p, source } = &err else {
            panic!("{label}: expected a JSON error, got {err:?}");
        };
        assert_eq!(*p, path, "{label}");
        // The line serde_json points at is the one we broke.
        let line = text
            .lines()
            .position(|l| l.contains("sreial") || l.contains("\"one\"") || l.contains(",,"))
            .map_or(1, |i| i + 1);
        assert_eq!(source.line(), line, "{label}: {err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{}: ", path.display())),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("at line {line} column {}", source.column())),
            "{label}: {shown}"
        );
        for w in wanted {
            assert!(shown.contains(&w), "{label}: want {w:?} in {shown}");
        }
    }
}

#[test]
fn json_values_are_validated_like_toml_ones() {
    let text = full_zone().replace("address = \"192.0.2.2\"", "address = \"192.0.2.256\"");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zone.json");
    fs::write(&path, to_json(&text)).unwrap();
    match load_zone(&path) {
        Err(ZoneError::Invalid { path: p, key, .. }) => {
            assert_eq!(p, path);
            assert_eq!(key, "service.api.endpoint[0].address");
        }
        other => panic!("expected an invalid-value error, got {other:?}"),
    }
}

#[test]
fn load_dir_reads_json_beside_toml_and_one_origin_is_served_once() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.toml"), BASE).unwrap();
    fs::write(
        dir.path().join("b.json"),
        to_json(&BASE.replace("t.test.", "u.test.")),
    )
    .unwrap();
    fs::write(dir.path().join("notes.txt"), "not a zone").unwrap();
    let zones = load_dir(dir.path()).unwrap();
    let origins: Vec<String> = zones.iter().map(|z| z.origin.to_string()).collect();
    assert_eq!(origins, ["t.test.", "u.test."]);
    // The same origin in JSON and TOML is a duplicate like two TOML files.
    fs::write(dir.path().join("c.json"), to_json(BASE)).unwrap();
    let err = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("c.json: origin t.test. is already served by") && err.contains("a.toml"),
        "{err}"
    );
}

#[test]
fn a_reload_reuses_the_serving_version_of_an_unchanged_file() {
    use super::load::{Reread, reload_zone};
    use std::sync::Arc;
    let (dir, path) = write(BASE);
    let first = reload_zone(&path, None, Reread::Changed).unwrap();
    // Unchanged bytes: the same zone, not a copy.
    let again = reload_zone(&path, Some(&first), Reread::Changed).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    // Any edit loads anew, and an edit that breaks the file is an error as usual.
    fs::write(&path, BASE.replace("serial = 1", "serial = 2")).unwrap();
    let edited = reload_zone(&path, Some(&first), Reread::Changed).unwrap();
    assert!(!Arc::ptr_eq(&first, &edited));
    assert_eq!(edited.serial(), 2);
    fs::write(&path, BASE.replace("serial = 1", "serial = \"x\"")).unwrap();
    assert!(matches!(
        reload_zone(&path, Some(&edited), Reread::Changed),
        Err(ZoneError::Syntax { .. })
    ));
    // A zone with a master file depends on more than its own bytes: always loaded again.
    let master = dir.path().join("t.zone");
    fs::write(
        &master,
        "$ORIGIN t.test.\n@ 3600 IN SOA ns1 h 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n",
    )
    .unwrap();
    fs::write(&path, "origin = \"t.test.\"\nrecords_file = \"t.zone\"\n").unwrap();
    let with_master = reload_zone(&path, None, Reread::Changed).unwrap();
    assert_eq!(with_master.fingerprint, None);
    let again = reload_zone(&path, Some(&with_master), Reread::Changed).unwrap();
    assert!(!Arc::ptr_eq(&with_master, &again));
}

#[test]
fn parallel_work_gives_the_sequential_results_and_first_error() {
    use super::load::map_in_order;
    use std::time::Duration;
    let run = |items: &[usize],
               f: &(dyn Fn(usize) -> Result<usize, usize> + Sync),
               take_fails: Option<usize>| {
        let mut taken = Vec::new();
        let outcome = map_in_order(
            items,
            |&i| f(i),
            |v| {
                if Some(v) == take_fails {
                    return Err(1000 + v);
                }
                taken.push(v);
                Ok(())
            },
        );
        (taken, outcome)
    };
    let items: Vec<usize> = (0..2000).collect();
    let (taken, outcome) = run(&items, &|i| Ok(i * 2), None);
    assert_eq!(outcome, Ok(()));
    assert_eq!(taken, (0..2000).map(|i| i * 2).collect::<Vec<_>>());
    // Item 3 fails slowly, item 5 at once: another thread meets 5 first, yet 3 is the error,
    // and nothing after it is taken.
    let items: Vec<usize> = (0..10).collect();
    let slow_3 = |i| match i {
        3 => {
            std::thread::sleep(Duration::from_millis(50));
            Err(i)
        }
        5 => Err(i),
        _ => Ok(i),
    };
    assert_eq!(run(&items, &slow_3, None), (vec![0, 1, 2], Err(3)));
    // The consumer's own error (a duplicate origin) stops it in order too.
    assert_eq!(
        run(&items, &|i| Ok(i), Some(4)),
        (vec![0, 1, 2, 3], Err(1004))
    );
    assert_eq!(run(&[], &|i| Ok(i), None), (vec![], Ok(())));
    // Many items go in runs; errors inside runs, the later one met first by another thread.
    let items: Vec<usize> = (0..5000).collect();
    let two_errors = |i| match i {
        2500 => {
            std::thread::sleep(Duration::from_millis(50));
            Err(i)
        }
        3100 => Err(i),
        _ => Ok(i),
    };
    assert_eq!(
        run(&items, &two_errors, None),
        ((0..2500).collect(), Err(2500))
    );
    assert_eq!(
        run(&items, &|i| Ok(i), Some(4321)),
        ((0..4321).collect(), Err(5321))
    );
}

/// A zone file `z{i}.toml` for origin `origin` with one service.
fn numbered(dir: &Path, i: usize, origin: &str) {
    let text = BASE.replace("t.test.", origin)
        + "[region.eu]\n[service.www]\n[[service.www.endpoint]]\nregion = \"eu\"\naddress = \"192.0.2.1\"\n";
    fs::write(dir.join(format!("z{i:03}.toml")), text).unwrap();
}

#[test]
fn many_files_load_in_name_order_and_the_first_bad_one_by_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..60 {
        numbered(dir.path(), i, &format!("z{i}.test."));
    }
    let zones = load_dir(dir.path()).unwrap();
    let origins: Vec<String> = zones.iter().map(|z| z.origin.to_string()).collect();
    assert_eq!(
        origins,
        (0..60).map(|i| format!("z{i}.test.")).collect::<Vec<_>>()
    );
    // A broken file (50) and a duplicate origin (40 repeats 7): the duplicate comes first.
    fs::write(dir.path().join("z050.toml"), "origin = ").unwrap();
    numbered(dir.path(), 40, "z7.test.");
    let err = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("z040.toml: origin z7.test. is already served by") && err.contains("z007"),
        "{err}"
    );
    // Only broken files: the first by name.
    numbered(dir.path(), 40, "z40.test.");
    fs::write(dir.path().join("z020.toml"), "origin = 1").unwrap();
    let err = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}", dir.path().join("z020.toml").display())),
        "{err}"
    );
}

/// A zone of `count` services `s0`.. in one file (more than one block of pieces).
fn services_zone(count: usize) -> String {
    let mut text = BASE.to_string() + "[region.eu]\n[region.us]\n";
    for s in 0..count {
        text += &format!(
            "[service.s{s}]\npolicy = \"failover\"\nfailover = [\"us\", \"eu\"]\n\
             [[service.s{s}.endpoint]]\nregion = \"eu\"\naddress = \"10.0.{}.{}\"\n",
            s / 256,
            s % 256
        );
    }
    text
}

#[test]
fn a_large_zone_loads_in_parallel_as_one_parse_of_the_whole_file_would() {
    let text = services_zone(3000);
    let (_dir, path) = write(&text);
    let zone = load_zone(&path).unwrap();
    let keys: Vec<&str> = zone.services.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, (0..3000).map(|s| format!("s{s}")).collect::<Vec<_>>());
    // Two bad services in different blocks: the first in the file is the error.
    let bad = text
        .replace("address = \"10.0.9.196\"", "address = \"10.0.9.300\"")
        .replace("address = \"10.0.0.100\"", "address = \"10.0.0.x\"");
    let (_dir2, bad_path) = write(&bad);
    let err = load_zone(&bad_path).unwrap_err().to_string();
    assert!(
        err.contains("service.s100.") && err.contains("10.0.0.x"),
        "{err}"
    );
}

#[test]
fn a_stamp_is_trusted_only_once_the_files_times_are_settled() {
    use super::load::{SETTLED, settled};
    use super::model::FileStamp;
    use std::time::{Duration, UNIX_EPOCH};
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let at = |secs_ago: f64| -> i128 {
        1_000_000_000_000_000 - (secs_ago * 1e9) as i128 // ns since the epoch
    };
    let stamp = |mtime, ctime| FileStamp {
        dev: 1,
        ino: 2,
        size: 3,
        mtime,
        ctime,
    };
    let window = SETTLED.as_secs_f64();
    for (label, mtime, ctime, trusted) in [
        ("both old", at(window + 1.0), at(window + 1.0), true),
        ("exactly the window", at(window), at(window), true),
        ("written just now", at(0.1), at(0.1), false),
        (
            "old mtime, recent ctime (touch -d)",
            at(100.0),
            at(0.5),
            false,
        ),
        ("mtime in the future", at(-60.0), at(100.0), false),
    ] {
        let s = stamp(mtime, ctime);
        assert_eq!(settled(s, now), trusted.then_some(s), "{label}");
    }
}

#[test]
fn a_reload_does_not_open_a_file_whose_stamp_holds_and_sighup_reads_it() {
    use super::load::{Reread, reload_zone, stamp_of};
    use std::sync::Arc;
    let (_dir, path) = write(BASE);
    let mut zone = load_zone(&path).unwrap();
    // Just written: not settled, no stamp.
    assert_eq!(zone.stamp.get(), None);
    // As if loaded long ago; a wrong fingerprint shows whether the file was read (its hash
    // would not match, and the zone would be parsed again).
    let stamp = stamp_of(&fs::metadata(&path).unwrap());
    zone.fingerprint = Some(zone.fingerprint.unwrap() ^ 1);
    zone.stamp.set(Some(stamp));
    let prev = Arc::new(zone);
    let again = reload_zone(&path, Some(&prev), Reread::Changed).unwrap();
    assert!(
        Arc::ptr_eq(&prev, &again),
        "an unchanged stamp serves the same version"
    );
    let read = reload_zone(&path, Some(&prev), Reread::All).unwrap();
    assert!(
        !Arc::ptr_eq(&prev, &read),
        "Reread::All reads and hashes the file"
    );

    // Other bytes of the same size with the old mtime put back: the ctime moved, so the file
    // is read and the edit taken.
    let (_dir, path) = write(BASE);
    let prev = Arc::new(load_zone(&path).unwrap());
    let meta = fs::metadata(&path).unwrap();
    prev.stamp.set(Some(stamp_of(&meta)));
    let mtime = meta.modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20)); // past the ctime's granularity
    fs::write(&path, BASE.replace("serial = 1", "serial = 2")).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let after = fs::metadata(&path).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (meta.len(), mtime)
    );
    let edited = reload_zone(&path, Some(&prev), Reread::Changed).unwrap();
    assert_eq!(edited.serial(), 2);

    // Touched without an edit: read, found unchanged by its hash, the same version served.
    let (_dir, path) = write(BASE);
    let prev = Arc::new(load_zone(&path).unwrap());
    prev.stamp
        .set(Some(stamp_of(&fs::metadata(&path).unwrap())));
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&path, BASE).unwrap();
    let touched = reload_zone(&path, Some(&prev), Reread::Changed).unwrap();
    assert!(Arc::ptr_eq(&prev, &touched));
}

#[test]
fn zone_files_are_plain_files_or_links_to_them() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.toml"), BASE).unwrap();
    fs::write(dir.path().join("notes.txt"), "").unwrap();
    fs::create_dir(dir.path().join("d.toml")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a.toml"), dir.path().join("b.toml")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("c.json")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("d.toml"), dir.path().join("e.toml")).unwrap();
    let files = super::load::zone_files(dir.path()).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.toml", "b.toml"]);
}

#[test]
fn zone_files_come_in_the_order_of_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "b.toml", "a.json", "A.toml", "a-b.toml", "a.b.toml", "ab.toml", "é.toml", "a.toml",
    ];
    for name in names {
        fs::write(dir.path().join(name), BASE).unwrap();
    }
    let files = super::load::zone_files(dir.path()).unwrap();
    let mut sorted: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    sorted.sort();
    assert_eq!(files, sorted);
}
