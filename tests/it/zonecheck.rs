//! `check-config` on zones that must not load, or that load with a warning: the exit code
//! (2 for a bad zone), the message (file and key or line, values cut short), and `--strict`,
//! which turns warnings (RFC 2181 §10.3: an MX/NS/SRV target that is a CNAME) into errors.

use std::fs;
use std::path::Path;

use hickory_proto::rr::RecordType;

use crate::harness::{Finished, Meridian, Query, Transport, run};

/// A zone's top: origin, apex NS, SOA and the NS host's address.
fn top(origin: &str) -> String {
    format!(
        "origin = \"{origin}\"\nns = [\"ns1.{origin}\"]\n[soa]\nmname = \"ns1.{origin}\"\n\
         rname = \"h.{origin}\"\nserial = 1\n[[record]]\nname = \"ns1\"\ntype = \"A\"\n\
         data = [\"192.0.2.1\"]\n"
    )
}

/// A master file's top for `records_file` zones: SOA, NS and the NS host's address.
fn master_top(origin: &str) -> String {
    format!(
        "$ORIGIN {origin}\n@ 3600 IN SOA ns1 h 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
         ns1 3600 IN A 192.0.2.1\n"
    )
}

fn check_config(dir: &Path, extra: &[&str]) -> Finished {
    let mut args = vec!["check-config", "--zones", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

/// `count` quoted TXT values of 1,000 bytes, for a TOML array.
fn txt_values(count: usize) -> String {
    (0..count)
        .map(|i| format!("'\"{i:04}{}\"'", "x".repeat(996)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn check_config_rejects_bad_zones_naming_file_and_key_or_line() {
    let long = "y".repeat(70_000);
    let service_below_cut = format!(
        "{}[[record]]\nname = \"sub\"\ntype = \"NS\"\ndata = [\"ns.elsewhere.test.\"]\n\
         [region.eu]\n[service.\"www.sub\"]\n[[service.\"www.sub\".endpoint]]\nregion = \"eu\"\n\
         address = \"192.0.2.9\"\n",
        top("z.test.")
    );
    let big_lines: String = (0..70)
        .map(|i| {
            format!(
                "big 300 IN TXT \"{i:04}{}\" {}\n",
                "x".repeat(246),
                quarters()
            )
        })
        .collect();
    // (label, TOML, master file (z.zone) if any, what stderr must contain)
    let cases: Vec<(&str, String, Option<String>, Vec<&str>)> = vec![
        (
            "70 KB TXT RRset in TOML",
            format!(
                "{}[[record]]\nname = \"big\"\ntype = \"TXT\"\ndata = [{}]\n",
                top("z.test."),
                txt_values(70)
            ),
            None,
            vec![
                "z.toml: record[1]: big.z.test. TXT is 71820 bytes in wire form",
                "at most 65229 bytes",
            ],
        ),
        (
            "70 KB TXT RRset in the master file",
            "origin = \"z.test.\"\nrecords_file = \"z.zone\"\n".into(),
            Some(format!("{}{big_lines}", master_top("z.test."))),
            vec!["z.zone:5: big.z.test. TXT is 71820 bytes in wire form"],
        ),
        (
            "CH class in the master file",
            "origin = \"z.test.\"\nrecords_file = \"z.zone\"\n".into(),
            Some(format!("{}version CH TXT \"1\"\n", master_top("z.test."))),
            vec!["z.zone:5: class CH: only class IN is served"],
        ),
        (
            "two CNAMEs in the master file",
            "origin = \"z.test.\"\nrecords_file = \"z.zone\"\n".into(),
            Some(format!(
                "{}www 300 IN CNAME a.example.\nwww 300 IN CNAME b.example.\n",
                master_top("z.test.")
            )),
            vec!["z.zone:6: www.z.test. has a second CNAME (the first is at z.zone:5)"],
        ),
        (
            "service below a delegation",
            service_below_cut,
            None,
            vec!["z.toml: service.www.sub: www.sub.z.test. is below the delegation sub.z.test."],
        ),
        (
            "a 70 KB value is cut",
            format!(
                "{}[[record]]\nname = \"t\"\ntype = \"A\"\ndata = [\"1{long}\"]\n",
                top("z.test.")
            ),
            None,
            vec!["z.toml: record[1].data[0]: bad A data `1yyyy", "…`"],
        ),
    ];
    for (label, toml, master, wanted) in cases {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("z.toml"), toml).unwrap();
        if let Some(master) = master {
            fs::write(dir.path().join("z.zone"), master).unwrap();
        }
        let out = check_config(dir.path(), &[]);
        assert_eq!(out.code, Some(2), "{label}: {out:?}");
        assert!(!out.stdout.contains("ok "), "{label}: {}", out.stdout);
        for w in wanted {
            assert!(
                out.stderr.contains(w),
                "{label}: want {w:?} in:\n{}",
                out.stderr
            );
        }
        assert!(
            out.stderr.len() < 1000,
            "{label}: {} bytes of error",
            out.stderr.len()
        );
    }
}

#[test]
fn cname_targets_warn_and_strict_makes_them_errors() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("lint.toml"),
        format!(
            "{}[[record]]\nname = \"mail\"\ntype = \"CNAME\"\ndata = [\"mx.elsewhere.test.\"]\n\
             [[record]]\nname = \"@\"\ntype = \"MX\"\ndata = [\"10 mail\"]\n",
            top("lint.test.")
        ),
    )
    .unwrap();
    let warning = "lint.toml: lint.test. MX: mail.lint.test. is a CNAME; an MX target must not \
                   be an alias (RFC 2181 §10.3)";

    let out = check_config(dir.path(), &[]);
    assert_eq!(out.code, Some(0), "a warning alone passes: {out:?}");
    assert!(out.stdout.starts_with("ok lint.test. ("), "{}", out.stdout);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("meridian: warning: ") && l.ends_with(warning)),
        "{}",
        out.stderr
    );

    let out = check_config(dir.path(), &["--strict"]);
    assert_eq!(out.code, Some(2), "--strict: {out:?}");
    assert!(!out.stdout.contains("ok "), "{}", out.stdout);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("meridian: error: ") && l.ends_with(warning)),
        "{}",
        out.stderr
    );

    // The server loads the zone, serves it and logs the warning.
    let ns = Meridian::serve_dir(dir.path(), &[], false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ns.log().contains("record target is a CNAME") {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning logged:\n{}",
            ns.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        ns.log()
            .lines()
            .any(|l| l.contains("record target is a CNAME") && l.contains("mail.lint.test.")),
        "{}",
        ns.log()
    );
    assert_eq!(
        ns.query_tcp("lint.test.", RecordType::MX).answers.len(),
        1,
        "served as written"
    );
    drop(ns);

    // A clean zone passes --strict.
    fs::write(
        dir.path().join("lint.toml"),
        format!(
            "{}[[record]]\nname = \"@\"\ntype = \"MX\"\ndata = [\"10 ns1\"]\n",
            top("lint.test.")
        ),
    )
    .unwrap();
    let out = check_config(dir.path(), &["--strict"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

/// Three more 250-byte character-strings: with a 250-byte first one, 1,000 bytes of TXT
/// (a master-file string holds at most 255).
fn quarters() -> String {
    format!("\"{0}\" \"{0}\" \"{0}\"", "x".repeat(250))
}

#[test]
fn the_largest_rrset_the_loader_accepts_is_answered_whole_over_tcp() {
    // 63 TXT records of 1,000 bytes: 64,638 bytes of RRset, under the 65,229 the loader
    // allows; with the header, question and an OPT it still fits one TCP message.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("z.toml"),
        format!(
            "{}[[record]]\nname = \"big\"\ntype = \"TXT\"\ndata = [{}]\n",
            top("z.test."),
            txt_values(63)
        ),
    )
    .unwrap();
    let out = check_config(dir.path(), &["--strict"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let ns = Meridian::serve_dir(dir.path(), &[], false);
    for query in [
        Query::new("big.z.test.", RecordType::TXT),
        Query::new("big.z.test.", RecordType::TXT).edns(1232),
    ] {
        let reply = ns.exchange(&query, Transport::Tcp);
        assert!(!reply.msg.metadata.truncation, "TC over TCP");
        assert_eq!(reply.answers_of(RecordType::TXT).len(), 63);
        assert!(reply.raw.len() > 63 * 1_004, "{} bytes", reply.raw.len());
    }
    // Over UDP it cannot fit: TC, and the client retries over TCP.
    let reply = ns.exchange(
        &Query::new("big.z.test.", RecordType::TXT).edns(1232),
        Transport::Udp,
    );
    assert!(reply.msg.metadata.truncation);
}

#[test]
fn check_config_loads_json_zones_and_names_line_and_column_of_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let json = r#"{
  "origin": "j.test.",
  "ns": ["ns1.j.test."],
  "soa": {"mname": "ns1.j.test.", "rname": "h.j.test.", "serial": 7},
  "record": [{"name": "ns1", "type": "A", "data": ["192.0.2.1"]}],
  "region": {"eu": {"countries": ["GB"]}},
  "service": {"www": {"endpoint": [{"region": "eu", "address": "192.0.2.10"}]}}
}
"#;
    fs::write(dir.path().join("j.json"), json).unwrap();
    fs::write(dir.path().join("z.toml"), top("z.test.")).unwrap();
    let out = check_config(dir.path(), &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("ok j.test. (")
            && out
                .stdout
                .contains("j.json): serial 7, 3 records, 1 regions, 1 services"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ok z.test. ("), "{}", out.stdout);

    // A misspelt key on line 4: the message names the file, line and column.
    fs::write(
        dir.path().join("j.json"),
        json.replace("\"serial\": 7", "\"serial\": 7, \"sreial\": 8"),
    )
    .unwrap();
    let out = check_config(dir.path(), &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("j.json: unknown field `sreial`")
            && out.stderr.contains("at line 4 column"),
        "{}",
        out.stderr
    );
}

/// A zone served from a JSON file answers like its TOML twin.
#[test]
fn a_json_zone_is_served() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("j.json"),
        r#"{"origin": "j.test.", "ns": ["ns1.j.test."],
            "soa": {"mname": "ns1.j.test.", "rname": "h.j.test.", "serial": 1},
            "record": [{"name": "ns1", "type": "A", "data": ["192.0.2.1"]}],
            "region": {"eu": {}},
            "service": {"www": {"endpoint": [{"region": "eu", "address": "192.0.2.10"}]}}}"#,
    )
    .unwrap();
    let ns = Meridian::serve_dir(dir.path(), &[], false);
    assert_eq!(ns.a("www.j.test.").len(), 1);
    assert_eq!(ns.a("www.j.test.")[0].to_string(), "192.0.2.10");
}
