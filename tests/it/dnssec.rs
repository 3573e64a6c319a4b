//! DNSSEC online signing as clients see it, on the zone of `tests/fixtures/dnssec/signed`
//! (KSK + ZSK, ECDSA P-256): every RRset of a DO=1 answer carries RRSIGs that verify (checked
//! here with ring, rebuilding the signed data from the decoded records, RFC 4034 §3.1.8.1),
//! additional data of the zone included and glue excepted; the DNSKEY RRset is signed by the
//! KSK, denial is RFC 9824's compact form, NSEC and RRSIG queries get the name's own records;
//! DO=0 answers are byte for byte those of the same zone unsigned (`dnssec/unsigned`, at the
//! serial the signed zone serves); the signature caches count in `/metrics`; AXFR carries the
//! RRSIGs and NSECs; key times take effect when they come, without a reload, and raise the
//! serial; a reload with a broken key keeps the signed zone.
//!
//! System tests (`#[ignore]`, need unbound, delv, knotd, dnssec-keygen and dnssec-dsfromkey):
//! a real validating resolver (unbound, started here on 127.0.0.1 with the zone's trust
//! anchor, ECS forwarded) and `delv` validate static, steered (ECS), NXDOMAIN, NODATA,
//! wildcard, CNAME-chain, delegation and NSEC answers as secure, after a failover and at every
//! step of a ZSK and a KSK rollover, and reject corrupted signatures (SERVFAIL); Knot serving
//! the transferred zone validates, and a Knot secondary transfers the zone again once it
//! re-signs; BIND's tools agree on keys and DS records.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::harness::unbound::Unbound;
use crate::harness::{
    Meridian, Query, Reply, Transport, exchange_at, exchange_raw, fixture, rdata_wire, system,
};

const SIGNED: &str = "dnssec/signed";
const UNSIGNED: &str = "dnssec/unsigned";
const ZONE: &str = "signed.test.";
const RRSIG: u16 = 46;
const NSEC: u16 = 47;
const DNSKEY: u16 = 48;
const NXNAME: u16 = 128;

/// Raw RDATA of a record (types hickory decodes as unknown keep their bytes).
fn raw(r: &Record) -> Vec<u8> {
    match &r.data {
        RData::Unknown { rdata, .. } => rdata.anything.clone(),
        other => rdata_wire(other),
    }
}

fn lower_wire(name: &Name) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.to_lowercase().iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// The zone's DNSKEYs: (tag, flags, algorithm, public key), from a DO=1 DNSKEY query.
fn dnskeys(ns: &Meridian) -> Vec<(u16, u16, u8, Vec<u8>)> {
    let reply = exchange_at(
        ns.dns,
        &Query::new(ZONE, RecordType::DNSKEY).dnssec_ok(),
        Transport::Tcp,
    );
    let keys: Vec<_> = reply
        .answers
        .iter()
        .filter(|r| u16::from(r.record_type()) == DNSKEY)
        .map(|r| {
            let d = raw(r);
            (
                tag(&d),
                u16::from_be_bytes([d[0], d[1]]),
                d[3],
                d[4..].to_vec(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 2, "KSK and ZSK: {reply:?}");
    keys
}

fn tag(dnskey: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in dnskey.iter().enumerate() {
        ac += if i & 1 == 1 {
            u32::from(*b)
        } else {
            u32::from(*b) << 8
        };
    }
    ac += (ac >> 16) & 0xFFFF;
    (ac & 0xFFFF) as u16
}

/// Verifies every RRset of `records` (one section) against its RRSIGs with `keys`; returns
/// the (owner, type) of the RRsets checked and the tags that signed them.
fn verify_section(records: &[Record], keys: &[(u16, u16, u8, Vec<u8>)]) -> Vec<(String, u16, u16)> {
    let mut sets: BTreeMap<(Vec<u8>, u16), Vec<&Record>> = BTreeMap::new();
    let mut sigs: BTreeMap<(Vec<u8>, u16), Vec<Vec<u8>>> = BTreeMap::new();
    for r in records {
        let owner = lower_wire(&r.name);
        let t = u16::from(r.record_type());
        if t == RRSIG {
            let d = raw(r);
            sigs.entry((owner, u16::from_be_bytes([d[0], d[1]])))
                .or_default()
                .push(d);
        } else {
            sets.entry((owner, t)).or_default().push(r);
        }
    }
    let mut checked = Vec::new();
    for ((owner, t), rrs) in &sets {
        let list = sigs
            .get(&(owner.clone(), *t))
            .unwrap_or_else(|| panic!("no RRSIG over {} type {t}", rrs[0].name));
        for sig in list {
            let key_tag = verify_rrsig(rrs, sig, keys).unwrap_or_else(|e| panic!("{e}"));
            checked.push((rrs[0].name.to_lowercase().to_string(), *t, key_tag));
        }
    }
    checked
}

/// Checks the RRSIG RDATA `sig` over the RRset `rrs` (one owner and type) with `keys`;
/// returns the signing key's tag, or what is wrong.
fn verify_rrsig(
    rrs: &[&Record],
    sig: &[u8],
    keys: &[(u16, u16, u8, Vec<u8>)],
) -> Result<u16, String> {
    let owner = lower_wire(&rrs[0].name);
    let t = u16::from(rrs[0].record_type());
    let labels = sig[3];
    let orig_ttl = u32::from_be_bytes([sig[4], sig[5], sig[6], sig[7]]);
    let key_tag = u16::from_be_bytes([sig[16], sig[17]]);
    let signer_len = {
        let mut p = 18;
        while sig[p] != 0 {
            p += 1 + sig[p] as usize;
        }
        p + 1 - 18
    };
    let (head, signature) = sig.split_at(18 + signer_len);
    assert_eq!(
        &head[18..],
        lower_wire(&Name::from_ascii(ZONE).unwrap()),
        "signer"
    );
    assert_eq!(
        usize::from(labels),
        rrs[0].name.num_labels() as usize,
        "labels of {}",
        rrs[0].name
    );
    let mut rdatas: Vec<Vec<u8>> = rrs.iter().map(|r| raw(r)).collect();
    rdatas.sort();
    rdatas.dedup();
    let mut data = head.to_vec();
    for rd in &rdatas {
        data.extend_from_slice(&owner);
        data.extend_from_slice(&t.to_be_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&orig_ttl.to_be_bytes());
        data.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        data.extend_from_slice(rd);
    }
    let (_, _, alg, public) = keys
        .iter()
        .find(|k| k.0 == key_tag)
        .ok_or_else(|| format!("RRSIG by unknown key {key_tag}"))?;
    assert_eq!(*alg, 13);
    let public = [&[4u8][..], public].concat();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &public)
        .verify(&data, signature)
        .map_err(|_| format!("RRSIG over {} type {t} does not verify", rrs[0].name))?;
    Ok(key_tag)
}

/// Asks `name`/`qtype` with DO=1 and verifies answer and authority; returns the reply.
fn signed_reply(
    ns: &Meridian,
    keys: &[(u16, u16, u8, Vec<u8>)],
    name: &str,
    qtype: RecordType,
) -> (Reply, Vec<(String, u16, u16)>) {
    let reply = exchange_at(ns.dns, &Query::new(name, qtype).dnssec_ok(), Transport::Udp);
    let mut checked = verify_section(&reply.answers, keys);
    checked.extend(verify_section(&reply.authorities, keys));
    (reply, checked)
}

/// NSEC RDATA split: next name (wire) and the types of its bitmap.
fn nsec_of(reply: &Reply) -> (Name, Vec<u8>, Vec<u16>) {
    let r = reply
        .authorities
        .iter()
        .find(|r| u16::from(r.record_type()) == NSEC)
        .unwrap_or_else(|| panic!("no NSEC: {reply:?}"));
    let d = raw(r);
    let mut p = 0;
    while d[p] != 0 {
        p += 1 + d[p] as usize;
    }
    let (next, mut bitmap) = d.split_at(p + 1);
    let mut types = Vec::new();
    while let [window, len, rest @ ..] = bitmap {
        let (bits, tail) = rest.split_at(usize::from(*len));
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    types.push(u16::from(*window) * 256 + (i * 8 + bit) as u16);
                }
            }
        }
        bitmap = tail;
    }
    (r.name.clone(), next.to_vec(), types)
}

#[test]
fn do1_answers_carry_rrsigs_that_verify() {
    let ns = Meridian::serve(SIGNED);
    let keys = dnskeys(&ns);
    let ksk = keys.iter().find(|k| k.1 == 257).unwrap().0;
    let zsk = keys.iter().find(|k| k.1 == 256).unwrap().0;

    let (_, checked) = signed_reply(&ns, &keys, ZONE, RecordType::DNSKEY);
    assert_eq!(
        checked,
        [(ZONE.to_string(), DNSKEY, ksk)],
        "DNSKEY is signed by the KSK only"
    );

    // Static, MX (name in RDATA lowercased for the signature), CNAME chain, CDS/CDNSKEY.
    for (name, qtype, want) in [
        (
            "Static.Signed.Test.",
            RecordType::A,
            vec![("static.signed.test.", 1u16)],
        ),
        (ZONE, RecordType::MX, vec![(ZONE, 15)]),
        (
            "alias.signed.test.",
            RecordType::A,
            vec![("alias.signed.test.", 5), ("static.signed.test.", 1)],
        ),
        (ZONE, RecordType::CDS, vec![(ZONE, 59)]),
        (ZONE, RecordType::CDNSKEY, vec![(ZONE, 60)]),
        // Steered: the failover service, both families; the geo service for 127/8.
        (
            "www.signed.test.",
            RecordType::A,
            vec![("www.signed.test.", 1)],
        ),
        (
            "www.signed.test.",
            RecordType::AAAA,
            vec![("www.signed.test.", 28)],
        ),
        (
            "geo.signed.test.",
            RecordType::A,
            vec![("geo.signed.test.", 1)],
        ),
        // The DS of a signed child, answered by the parent although the child is served
        // here too (RFC 4035 §3.1.4.1).
        (
            "secure.signed.test.",
            RecordType::DS,
            vec![("secure.signed.test.", 43)],
        ),
        // A wildcard expansion is signed at the name asked for.
        (
            "x.Wild.signed.test.",
            RecordType::TXT,
            vec![("x.wild.signed.test.", 16)],
        ),
    ] {
        let (reply, checked) = signed_reply(&ns, &keys, name, qtype);
        assert_eq!(reply.rcode(), 0, "{name} {qtype}");
        let got: Vec<(String, u16)> = checked.iter().map(|(n, t, _)| (n.clone(), *t)).collect();
        let want: Vec<(String, u16)> = want.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        assert_eq!(got, want, "{name} {qtype}");
        assert!(
            checked.iter().all(|c| c.2 == zsk),
            "{name}: signed by the ZSK"
        );
    }
    // ECS decides the geo answer, and each answer set verifies.
    for (subnet, want) in [
        ([10, 1, 2, 0], [198, 51, 100, 20]),
        ([127, 0, 0, 0], [203, 0, 113, 20]),
    ] {
        let q = Query::new("geo.signed.test.", RecordType::A)
            .dnssec_ok()
            .ecs(IpAddr::from(subnet), 24);
        let reply = exchange_at(ns.dns, &q, Transport::Udp);
        assert_eq!(crate::harness::a_records(&reply), [Ipv4Addr::from(want)]);
        verify_section(&reply.answers, &keys);
    }
}

/// The types of verified RRsets, sorted.
fn types_of(checked: &[(String, u16, u16)]) -> Vec<u16> {
    let mut t: Vec<u16> = checked.iter().map(|c| c.1).collect();
    t.sort();
    t
}

#[test]
fn denial_is_compact_and_proves_types() {
    let ns = Meridian::serve(SIGNED);
    let keys = dnskeys(&ns);
    // RFC 9824: a name that does not exist is NOERROR with NSEC(name -> \000.name, NXNAME).
    let (reply, checked) = signed_reply(&ns, &keys, "Nope.signed.test.", RecordType::A);
    assert_eq!(reply.rcode(), 0);
    assert!(reply.answers.is_empty());
    assert_eq!(types_of(&checked), [6, NSEC]);
    let (owner, next, types) = nsec_of(&reply);
    assert_eq!(owner.to_lowercase().to_string(), "nope.signed.test.");
    assert_eq!(next, [&[1u8, 0][..], &lower_wire(&owner)].concat());
    assert_eq!(types, [RRSIG, NSEC, NXNAME]);
    // Without DO the same name is a plain NXDOMAIN.
    let plain = exchange_at(
        ns.dns,
        &Query::new("nope.signed.test.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(plain.rcode(), 3);

    // NODATA: the NSEC at the name lists what is there.
    for (name, qtype, want) in [
        ("txt.signed.test.", RecordType::A, vec![16, RRSIG, NSEC]),
        (
            "www.signed.test.",
            RecordType::TXT,
            vec![1, 28, RRSIG, NSEC],
        ),
        ("wild.signed.test.", RecordType::A, vec![RRSIG, NSEC]),
        ("x.wild.signed.test.", RecordType::A, vec![16, RRSIG, NSEC]),
        ("child.signed.test.", RecordType::DS, vec![2, RRSIG, NSEC]),
        (
            ZONE,
            RecordType::TXT,
            vec![2, 6, 15, RRSIG, NSEC, DNSKEY, 59, 60],
        ),
    ] {
        let (reply, checked) = signed_reply(&ns, &keys, name, qtype);
        assert_eq!(
            (reply.rcode(), reply.answers.len()),
            (0, 0),
            "{name} {qtype}"
        );
        assert_eq!(types_of(&checked), [6, NSEC], "{name} {qtype}");
        assert_eq!(nsec_of(&reply).2, want, "{name} {qtype}");
    }

    // A referral carries the NSEC proving the child has no DS; NS and glue stay unsigned.
    let reply = exchange_at(
        ns.dns,
        &Query::new("a.child.signed.test.", RecordType::A).dnssec_ok(),
        Transport::Udp,
    );
    assert!(!reply.metadata.authoritative);
    let (owner, _, types) = nsec_of(&reply);
    assert_eq!(owner.to_string(), "child.signed.test.");
    assert_eq!(types, [2, RRSIG, NSEC]);
    let checked = verify_section(
        &reply
            .authorities
            .iter()
            .filter(|r| r.record_type() != RecordType::NS)
            .cloned()
            .collect::<Vec<_>>(),
        &keys,
    );
    assert_eq!(checked.iter().map(|c| c.1).collect::<Vec<_>>(), [NSEC]);
}

#[test]
fn do0_answers_are_byte_identical_to_the_unsigned_zone() {
    let signed = Meridian::serve(SIGNED);
    // The same zone unsigned, at the serial the signed one serves (which follows its signing).
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture(UNSIGNED).join("signed.toml")).unwrap();
    let text = text.replacen(
        "serial = 1\n",
        &format!("serial = {}\n", serial_at(signed.dns)),
        1,
    );
    std::fs::write(dir.path().join("signed.toml"), text).unwrap();
    let unsigned = Meridian::serve_dir(dir.path(), &[], false);
    let ecs = |q: Query| q.ecs(IpAddr::from([10, 1, 2, 0]), 24);
    for q in [
        Query::new("static.signed.test.", RecordType::A),
        Query::new("static.signed.test.", RecordType::A).edns(1232),
        Query::new("www.signed.test.", RecordType::A).edns(1232),
        Query::new("www.signed.test.", RecordType::AAAA),
        ecs(Query::new("geo.signed.test.", RecordType::A)),
        Query::new("nope.signed.test.", RecordType::A).edns(1232),
        Query::new("txt.signed.test.", RecordType::A),
        Query::new("x.wild.signed.test.", RecordType::TXT),
        Query::new("alias.signed.test.", RecordType::A),
        Query::new("chain.signed.test.", RecordType::A).edns(1232),
        Query::new("to-www.signed.test.", RecordType::A),
        Query::new("a.child.signed.test.", RecordType::A),
        Query::new("signed.test.", RecordType::SOA).edns(4096),
        Query::new("signed.test.", RecordType::MX),
    ] {
        for transport in [Transport::Udp, Transport::Tcp] {
            let bytes = q.to_bytes();
            let a =
                exchange_raw(signed.dns, &bytes, transport, crate::harness::NET_TIMEOUT).unwrap();
            let b =
                exchange_raw(unsigned.dns, &bytes, transport, crate::harness::NET_TIMEOUT).unwrap();
            assert_eq!(a, b, "{} {:?} over {transport:?}", q.name, q.qtype);
        }
    }
}

#[test]
fn steered_sets_are_signed_once_and_counted() {
    let ns = Meridian::serve(SIGNED);
    let miss = "meridian_dnssec_cache_misses_total{cache=\"answer\"}";
    let hit = "meridian_dnssec_cache_hits_total{cache=\"answer\"}";
    let before = (ns.metric(miss), ns.metric(hit));
    for _ in 0..5 {
        exchange_at(
            ns.dns,
            &Query::new("www.signed.test.", RecordType::A).dnssec_ok(),
            Transport::Udp,
        );
    }
    assert_eq!(ns.metric(miss) - before.0, 1.0, "one set, signed once");
    assert_eq!(ns.metric(hit) - before.1, 4.0);
    // Unsigned queries never touch the cache.
    exchange_at(
        ns.dns,
        &Query::new("www.signed.test.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(ns.metric(hit) - before.1, 4.0);
    assert!(ns.metric("meridian_dnssec_signatures_total{when=\"compile\"}") > 0.0);
    assert_eq!(ns.metric("meridian_dnssec_cache_evictions_total"), 0.0);
}

#[test]
fn a_bad_key_is_a_config_error_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture(SIGNED);
    std::fs::copy(src.join("signed.toml"), dir.path().join("signed.toml")).unwrap();
    // The key files are missing: check-config names the zone file, the key and the file.
    let out = crate::harness::run(&["check-config", "--zones", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("signed.toml: dnssec.key[0].file:") && out.stderr.contains(".key"),
        "{}",
        out.stderr
    );
}

// ---- real validators (system tests) ----

/// The trust anchor of the fixture zone: its KSK's DNSKEY line, from the committed key file.
fn anchor_record() -> String {
    let keys = fixture(SIGNED).join("keys");
    for entry in std::fs::read_dir(&keys).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Some(line) = text.lines().find(|l| l.contains("DNSKEY 257")) {
                return format!("{line}\n");
            }
        }
    }
    panic!("no KSK in {}", keys.display());
}

fn dig_via(resolver: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", resolver.ip()))
        .args(["-p", &resolver.port().to_string()])
        .args(["+dnssec", "+time=3", "+tries=2"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flags(dig: &str) -> String {
    dig.lines()
        .find(|l| l.starts_with(";; flags:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "system test: needs unbound and dig"]
fn unbound_validates_every_kind_of_answer_as_secure() {
    system::require_tool("dig", "bind9-dnsutils");
    let ns = Meridian::serve(SIGNED);
    let unbound = Unbound::start(ZONE, ns.dns, &anchor_record());
    for (args, want_status, want) in [
        (vec!["static.signed.test.", "A"], "NOERROR", "192.0.2.1"),
        (vec!["alias.signed.test.", "A"], "NOERROR", "192.0.2.2"),
        (vec!["www.signed.test.", "A"], "NOERROR", "198.51.100.10"),
        (vec!["www.signed.test.", "AAAA"], "NOERROR", "2001:db8::10"),
        // Steered by ECS: unbound forwards the client's subnet; 10/8 -> eu, 127/8 -> us.
        (
            vec!["geo.signed.test.", "A", "+subnet=10.1.2.0/24"],
            "NOERROR",
            "198.51.100.20",
        ),
        (vec!["geo.signed.test.", "A"], "NOERROR", "203.0.113.20"),
        (
            vec!["x.wild.signed.test.", "TXT"],
            "NOERROR",
            "\"wildcard\"",
        ),
        // Compact denial: NOERROR with the NXNAME NSEC (unbound reports it as NXDOMAIN
        // when it understands NXNAME, NOERROR/NODATA otherwise; both must be secure).
        (vec!["nope.signed.test.", "A"], "", "NSEC"),
        (vec!["txt.signed.test.", "A"], "NOERROR", "NSEC"),
        (vec!["child.signed.test.", "DS"], "NOERROR", "NSEC"),
        // CNAME chains: two links to static data, one to a steered service.
        (vec!["chain.signed.test.", "A"], "NOERROR", "192.0.2.2"),
        (vec!["to-www.signed.test.", "A"], "NOERROR", "198.51.100.10"),
        (vec!["signed.test.", "DNSKEY"], "NOERROR", "DNSKEY"),
        (
            vec!["static.signed.test.", "NSEC"],
            "NOERROR",
            "A RRSIG NSEC",
        ),
        // A signed delegation (the child zone is served here too): DS from the parent.
        (vec!["secure.signed.test.", "DS"], "NOERROR", "56841 15 2"),
        (
            vec!["www.secure.signed.test.", "A"],
            "NOERROR",
            "192.0.2.80",
        ),
    ] {
        let out = dig_via(unbound.addr, &args);
        assert!(
            flags(&out).contains(" ad"),
            "{args:?}: not secure (no AD):\n{out}"
        );
        assert!(
            out.contains(&format!("status: {want_status}")),
            "{args:?}:\n{out}"
        );
        assert!(out.contains(want), "{args:?}: no {want}:\n{out}");
    }
}

/// delv's trust anchor file for the fixture zone, in `dir`.
fn delv_anchor(dir: &std::path::Path) -> PathBuf {
    let anchor = anchor_record();
    let f: Vec<&str> = anchor.split_whitespace().collect();
    let conf = dir.join("anchor.conf");
    // delv wants `trust-anchors { NAME static-key FLAGS PROTO ALG "KEY"; };`.
    std::fs::write(
        &conf,
        format!(
            "trust-anchors {{ {} static-key {} {} {} \"{}\"; }};\n",
            f[0],
            f[3],
            f[4],
            f[5],
            f[6..].concat()
        ),
    )
    .unwrap();
    conf
}

/// How long one `delv` may take (it has no timeout of its own and was seen to hang on a loaded
/// machine); a run that times out is tried again, up to [`DELV_TRIES`] times.
const DELV_TIMEOUT: &str = "15";
const DELV_TRIES: usize = 3;

/// `delv` straight at `ns` with the trust anchor `conf`: its stdout and stderr.
fn delv(ns: &Meridian, conf: &std::path::Path, name: &str, qtype: &str) -> String {
    let mut text = String::new();
    for _ in 0..DELV_TRIES {
        let out = Command::new("timeout")
            .args(["-s", "KILL", DELV_TIMEOUT, "delv"])
            .arg(format!("@{}", ns.dns.ip()))
            .args(["-p", &ns.dns.port().to_string()])
            .arg("-a")
            .arg(conf)
            .arg(format!("+root={ZONE}"))
            .args([name, qtype])
            .output()
            .unwrap();
        text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Killed by `timeout -s KILL`: no exit code.
        if out.status.code().is_some() {
            return text;
        }
    }
    panic!("delv {name} {qtype} timed out {DELV_TRIES} times:\n{text}");
}

#[test]
#[ignore = "system test: needs delv"]
fn delv_fully_validates_with_the_trust_anchor() {
    system::require_tool("delv", "bind9-dnsutils");
    let ns = Meridian::serve(SIGNED);
    let dir = tempfile::tempdir().unwrap();
    let conf = delv_anchor(dir.path());
    for (name, qtype, want) in [
        ("static.signed.test.", "A", "; fully validated"),
        ("www.signed.test.", "AAAA", "; fully validated"),
        ("geo.signed.test.", "A", "; fully validated"),
        ("x.wild.signed.test.", "TXT", "; fully validated"),
        ("alias.signed.test.", "A", "; fully validated"),
        ("chain.signed.test.", "A", "; fully validated"),
        ("to-www.signed.test.", "A", "; fully validated"),
        (
            "nope.signed.test.",
            "A",
            "; negative response, fully validated",
        ),
        (
            "txt.signed.test.",
            "A",
            "; negative response, fully validated",
        ),
    ] {
        let text = delv(&ns, &conf, name, qtype);
        assert!(text.contains(want), "delv {name} {qtype}:\n{text}");
    }
}

// The switch exists only in debug builds, which the tests' binary is unless built with
// --release.
#[cfg(debug_assertions)]
#[test]
#[ignore = "system test: needs unbound, dig and delv"]
fn corrupted_signatures_get_servfail_from_unbound_and_fail_delv() {
    system::require_tool("dig", "bind9-dnsutils");
    system::require_tool("delv", "bind9-dnsutils");
    // The real binary with the hidden test-only switch: every signature but the DNSKEY
    // RRset's has one octet flipped, so the chain of trust holds and the data is bogus.
    let ns = Meridian::serve_with(SIGNED, &["--dnssec-corrupt-signatures-for-tests"]);
    // The answers do carry RRSIGs (by the ZSK), and they do not verify.
    let keys = dnskeys(&ns);
    let direct = exchange_at(
        ns.dns,
        &Query::new("static.signed.test.", RecordType::A).dnssec_ok(),
        Transport::Udp,
    );
    let (sigs, set): (Vec<&Record>, Vec<&Record>) = direct
        .answers
        .iter()
        .partition(|r| u16::from(r.record_type()) == RRSIG);
    assert_eq!((sigs.len(), set.len()), (1, 2), "{direct:?}");
    let err = verify_rrsig(&set, &raw(sigs[0]), &keys).expect_err("a corrupted signature verified");
    assert!(err.contains("does not verify"), "{err}");
    let unbound = Unbound::start_unchecked(ZONE, ns.dns, &anchor_record());
    for (name, qtype) in [
        ("static.signed.test.", "A"),
        ("www.signed.test.", "A"),
        ("x.wild.signed.test.", "TXT"),
        ("nope.signed.test.", "A"),
    ] {
        let out = dig_via(unbound.addr, &[name, qtype]);
        assert!(
            out.contains("status: SERVFAIL"),
            "{name} {qtype}: a corrupted signature must not validate:\n{out}"
        );
    }
    // The DNSKEY RRset itself is intact and secure: the failure is the data's signature.
    let out = dig_via(unbound.addr, &[ZONE, "DNSKEY"]);
    assert!(flags(&out).contains(" ad"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let conf = delv_anchor(dir.path());
    let text = delv(&ns, &conf, "static.signed.test.", "A");
    assert!(
        text.contains("resolution failed") && !text.contains("fully validated"),
        "delv must reject a corrupted signature:\n{text}"
    );
}

#[test]
#[ignore = "system test: needs dnssec-keygen and dnssec-dsfromkey (bind9-utils)"]
fn bind_tools_agree_on_keys_and_ds() {
    system::require_tool("dnssec-keygen", "bind9-utils");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Meridian's keys -> dnssec-dsfromkey; BIND's keys -> Meridian's `ds`.
    let ours = crate::harness::run(&[
        "dnssec",
        "keygen",
        "--zone",
        "gslb.test",
        "--ksk",
        "--dir",
        d,
    ]);
    assert_eq!(ours.code, Some(0), "{ours:?}");
    let out = Command::new("dnssec-keygen")
        .current_dir(dir.path())
        .args(["-q", "-a", "ED25519", "-f", "KSK", "gslb.test."])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    for key in &files {
        let bind = Command::new("dnssec-dsfromkey")
            .args(["-2"])
            .arg(key)
            .output()
            .unwrap();
        let bind = String::from_utf8_lossy(&bind.stdout).trim().to_string();
        let ours = crate::harness::run(&["dnssec", "ds", key.to_str().unwrap()]);
        assert_eq!(ours.stdout.trim(), bind, "{}", key.display());
    }
    // A zone can be signed with a key dnssec-keygen made (check-config loads it).
    let bind_key = files
        .iter()
        .find(|p| p.to_str().unwrap().contains("+015+"))
        .unwrap();
    let zone = format!(
        "origin = \"gslb.test.\"\nns = [\"ns1.gslb.test.\"]\n[soa]\nmname = \"ns1.gslb.test.\"\n\
         rname = \"admin.gslb.test.\"\nserial = 1\n[[record]]\nname = \"a\"\ntype = \"A\"\n\
         data = [\"192.0.2.1\"]\n[dnssec]\n[[dnssec.key]]\nfile = \"{}\"\n",
        bind_key.file_name().unwrap().to_str().unwrap()
    );
    std::fs::write(dir.path().join("gslb.toml"), zone).unwrap();
    let check = crate::harness::run(&["check-config", "--zones", d]);
    assert_eq!(check.code, Some(0), "{check:?}");
}

#[test]
#[ignore = "system test: needs unbound and dig"]
fn unbound_fails_a_broken_chain_and_follows_a_failover() {
    system::require_tool("dig", "bind9-dnsutils");
    let ns = Meridian::serve_with(
        SIGNED,
        &crate::harness::admin_args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    // A trust anchor that is not the zone's key: every answer is bogus, so SERVFAIL.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = crate::harness::run(&[
        "dnssec",
        "keygen",
        "--zone",
        ZONE,
        "--ksk",
        "--dir",
        elsewhere.path().to_str().unwrap(),
    ]);
    assert_eq!(other.code, Some(0), "{other:?}");
    let stem = other.stdout.trim().to_string();
    let wrong = std::fs::read_to_string(format!("{stem}.key")).unwrap();
    let bogus = Unbound::start_unchecked(ZONE, ns.dns, &wrong);
    let out = dig_via(bogus.addr, &["static.signed.test.", "A"]);
    assert!(
        out.contains("status: SERVFAIL"),
        "a broken chain must not validate:\n{out}"
    );
    drop(bogus);

    let unbound = Unbound::start(ZONE, ns.dns, &anchor_record());
    let out = dig_via(unbound.addr, &["www.signed.test.", "A"]);
    assert!(
        flags(&out).contains(" ad") && out.contains("198.51.100.10"),
        "{out}"
    );
    // Fail eu over: a new answer set, signed when first needed, validates too.
    let r = ns.admin_post(
        "/v1/overrides",
        r#"{"target":{"zone":"signed.test.","service":"www","region":"eu"},"state":"down","expires_in_seconds":600,"reason":"dnssec failover test"}"#,
    );
    assert!(r.status < 300, "{r:?}");
    crate::harness::wait_until(std::time::Duration::from_secs(5), "failover", || {
        crate::harness::a_records(&exchange_at(
            ns.dns,
            &Query::new("www.signed.test.", RecordType::A),
            Transport::Udp,
        )) == [Ipv4Addr::new(203, 0, 113, 10)]
    });
    // Unbound may hold the old set for the rest of its (zero) TTL's second.
    let out = crate::harness::wait_for(
        std::time::Duration::from_secs(5),
        "unbound sees the failover",
        || {
            let out = dig_via(unbound.addr, &["www.signed.test.", "A"]);
            out.contains("203.0.113.10").then_some(out)
        },
    );
    assert!(flags(&out).contains(" ad"), "{out}");
}

/// Appends `[[dnssec.key]]` entries and edits to `signed.toml` of `ns`'s zones, SIGHUPs and
/// waits for generation `generation`.
fn rewrite_and_reload(ns: &Meridian, text: &str, generation: u64) {
    ns.write_zone("signed.toml", text);
    ns.signal("HUP");
    ns.wait_for_generation(generation);
}

/// The tags of the keys that signed `name`/`qtype` (DO=1, verified).
fn signers(ns: &Meridian, name: &str, qtype: RecordType) -> Vec<u16> {
    let keys = all_dnskeys(ns);
    let reply = exchange_at(ns.dns, &Query::new(name, qtype).dnssec_ok(), Transport::Udp);
    let mut tags: Vec<u16> = verify_section(&reply.answers, &keys)
        .into_iter()
        .map(|c| c.2)
        .collect();
    tags.sort();
    tags
}

fn all_dnskeys(ns: &Meridian) -> Vec<(u16, u16, u8, Vec<u8>)> {
    let reply = exchange_at(
        ns.dns,
        &Query::new(ZONE, RecordType::DNSKEY).dnssec_ok(),
        Transport::Tcp,
    );
    reply
        .answers
        .iter()
        .filter(|r| u16::from(r.record_type()) == DNSKEY)
        .map(|r| {
            let d = raw(r);
            (
                tag(&d),
                u16::from_be_bytes([d[0], d[1]]),
                d[3],
                d[4..].to_vec(),
            )
        })
        .collect()
}

fn keygen(dir: &std::path::Path, ksk: bool) -> (String, u16) {
    let mut args = vec![
        "dnssec",
        "keygen",
        "--zone",
        ZONE,
        "--dir",
        dir.to_str().unwrap(),
    ];
    if ksk {
        args.push("--ksk");
    }
    let out = crate::harness::run(&args);
    assert_eq!(out.code, Some(0), "{out:?}");
    let stem = PathBuf::from(out.stdout.trim());
    let name = stem.file_name().unwrap().to_str().unwrap().to_string();
    let tag = name.rsplit('+').next().unwrap().parse().unwrap();
    (format!("keys/{name}"), tag)
}

#[test]
#[ignore = "system test: needs unbound and dig"]
fn zsk_and_ksk_rollovers_validate_at_every_step() {
    system::require_tool("dig", "bind9-dnsutils");
    let ns = Meridian::serve_copy(SIGNED, &[]);
    let keys_dir = ns.zones_dir().join("keys");
    let base = std::fs::read_to_string(ns.zones_dir().join("signed.toml")).unwrap();
    let old = all_dnskeys(&ns);
    let old_ksk = old.iter().find(|k| k.1 == 257).unwrap().0;
    let old_zsk = old.iter().find(|k| k.1 == 256).unwrap().0;
    let (new_ksk_file, new_ksk) = keygen(&keys_dir, true);
    let (new_zsk_file, new_zsk) = keygen(&keys_dir, false);
    // Double-DS: the parent (here, unbound's anchors) has the DS of both KSKs from the start.
    let ds = |file: &str| {
        let out = crate::harness::run(&[
            "dnssec",
            "ds",
            ns.zones_dir().join(format!("{file}.key")).to_str().unwrap(),
        ]);
        format!("{}\n", out.stdout.trim())
    };
    let old_ksk_file = base
        .lines()
        .filter_map(|l| {
            l.strip_prefix("file = \"")
                .and_then(|f| f.strip_suffix('"'))
        })
        .find(|f| f.contains(&format!("+{old_ksk:05}")))
        .unwrap()
        .to_string();
    let old_zsk_file = base
        .lines()
        .filter_map(|l| {
            l.strip_prefix("file = \"")
                .and_then(|f| f.strip_suffix('"'))
        })
        .find(|f| f.contains(&format!("+{old_zsk:05}")))
        .unwrap()
        .to_string();
    let anchors = format!("{}{}", ds(&old_ksk_file), ds(&new_ksk_file));
    let unbound = Unbound::start(ZONE, ns.dns, &anchors);
    let secure = |what: &str| {
        for (name, qtype) in [
            ("static.signed.test.", "A"),
            ("www.signed.test.", "A"),
            ("nope.signed.test.", "A"),
        ] {
            let out = dig_via(unbound.addr, &[name, qtype]);
            assert!(
                flags(&out).contains(" ad"),
                "{what}: {name} {qtype} not secure:\n{out}"
            );
        }
    };
    secure("before");
    let now = meridian::dnssec::time::now();
    let head = format!("{}\n", base.split("\n[dnssec]\n").next().unwrap());
    let entry = |file: &str, extra: &str| format!("[[dnssec.key]]\nfile = \"{file}\"\n{extra}");
    let mut generation = 1;
    let mut step = |what: &str, entries: &[String]| {
        generation += 1;
        rewrite_and_reload(
            &ns,
            &format!("{head}[dnssec]\n{}", entries.concat()),
            generation,
        );
        secure(what);
    };
    // ZSK pre-publish: the new ZSK is published, signing nothing yet.
    step(
        "zsk published",
        &[
            entry(&old_ksk_file, ""),
            entry(&old_zsk_file, ""),
            entry(&new_zsk_file, "activate = 4102444800\n"),
        ],
    );
    assert_eq!(all_dnskeys(&ns).len(), 3);
    assert_eq!(
        signers(&ns, "static.signed.test.", RecordType::A),
        [old_zsk]
    );
    // The new ZSK signs, the old one retired (still published).
    step(
        "zsk active",
        &[
            entry(&old_ksk_file, ""),
            entry(&old_zsk_file, &format!("retire = {now}\n")),
            entry(&new_zsk_file, ""),
        ],
    );
    assert_eq!(
        signers(&ns, "static.signed.test.", RecordType::A),
        [new_zsk]
    );
    assert_eq!(all_dnskeys(&ns).len(), 3);
    // The old ZSK removed.
    step(
        "zsk removed",
        &[entry(&old_ksk_file, ""), entry(&new_zsk_file, "")],
    );
    assert_eq!(all_dnskeys(&ns).len(), 2);
    // KSK double-DS: swap the KSK in the DNSKEY RRset; both DS are at the "parent".
    step(
        "ksk swapped",
        &[
            entry(&old_ksk_file, &format!("remove = {now}\n")),
            entry(&new_ksk_file, ""),
            entry(&new_zsk_file, ""),
        ],
    );
    assert_eq!(signers(&ns, ZONE, RecordType::DNSKEY), [new_ksk]);
    // Double-DS, last step: the parent drops the old DS; the new KSK alone is the anchor.
    drop(unbound);
    let parent = Unbound::start(ZONE, ns.dns, &ds(&new_ksk_file));
    for (name, qtype) in [
        ("static.signed.test.", "A"),
        ("www.signed.test.", "A"),
        ("nope.signed.test.", "A"),
    ] {
        let out = dig_via(parent.addr, &[name, qtype]);
        assert!(
            flags(&out).contains(" ad"),
            "old DS gone: {name} {qtype} not secure:\n{out}"
        );
    }
    let cds = exchange_at(ns.dns, &Query::new(ZONE, RecordType::CDS), Transport::Udp);
    assert_eq!(cds.answers.len(), 1);
    assert_eq!(
        u16::from_be_bytes([raw(&cds.answers[0])[0], raw(&cds.answers[0])[1]]),
        new_ksk
    );
}

/// Rewrites the served zone so that, with no further reload, a new ZSK is published two
/// seconds from now and signs from four seconds on, when the old ZSK retires; the old one is
/// removed at six. Returns the old and new ZSK tags.
fn schedule_zsk_rollover(ns: &Meridian) -> (u16, u16) {
    let keys_dir = ns.zones_dir().join("keys");
    let base = std::fs::read_to_string(ns.zones_dir().join("signed.toml")).unwrap();
    let old_zsk = all_dnskeys(ns).iter().find(|k| k.1 == 256).unwrap().0;
    let (new_zsk_file, new_zsk) = keygen(&keys_dir, false);
    let now = meridian::dnssec::time::now();
    let (publish, activate, remove) = (now + 2, now + 4, now + 6);
    let head = base.split("\n[[dnssec.key]]\n").next().unwrap();
    let old_zsk_entry = base
        .split("[[dnssec.key]]\n")
        .find(|e| e.contains(&format!("+{old_zsk:05}\"")))
        .unwrap()
        .trim_end();
    let old_ksk_entry = base
        .split("[[dnssec.key]]\n")
        .skip(1)
        .find(|e| !e.contains(&format!("+{old_zsk:05}\"")))
        .unwrap()
        .trim_end();
    rewrite_and_reload(
        ns,
        &format!(
            "{head}\n[[dnssec.key]]\n{old_ksk_entry}\n[[dnssec.key]]\n{old_zsk_entry}\n\
             retire = {activate}\nremove = {remove}\n[[dnssec.key]]\nfile = \"{new_zsk_file}\"\n\
             publish = {publish}\nactivate = {activate}\n"
        ),
        2,
    );
    (old_zsk, new_zsk)
}

#[test]
fn key_times_roll_the_keys_without_a_reload() {
    let ns = Meridian::serve_copy(SIGNED, &[]);
    let before = serial_at(ns.dns);
    let (old_zsk, new_zsk) = schedule_zsk_rollover(&ns);
    // The reload is counted just after its table serves.
    let deadline = std::time::Duration::from_secs(10);
    crate::harness::wait_until(deadline, "the reload counted", || {
        ns.metric("meridian_reloads_total") >= 1.0
    });
    let reloads = ns.metric("meridian_reloads_total");
    assert_eq!(
        all_dnskeys(&ns).len(),
        2,
        "the new ZSK is not published yet"
    );
    assert_eq!(
        signers(&ns, "static.signed.test.", RecordType::A),
        [old_zsk]
    );
    let tags = |ns: &Meridian| {
        let mut t: Vec<u16> = all_dnskeys(ns).iter().map(|k| k.0).collect();
        t.sort();
        t
    };
    crate::harness::wait_until(deadline, "the new ZSK published at its time", || {
        tags(&ns).contains(&new_zsk)
    });
    crate::harness::wait_until(deadline, "the new ZSK signing at its time", || {
        signers(&ns, "static.signed.test.", RecordType::A) == [new_zsk]
    });
    assert!(tags(&ns).contains(&old_zsk), "retired, still published");
    crate::harness::wait_until(deadline, "the old ZSK removed at its time", || {
        !tags(&ns).contains(&old_zsk)
    });
    assert_eq!(
        ns.metric("meridian_reloads_total"),
        reloads,
        "no reload between"
    );
    assert!(ns.log().contains("DNSSEC re-signed"), "{}", ns.log());
    // The zone changed three times by itself: each time its serial rose.
    let after = serial_at(ns.dns);
    assert!(
        later(before, after) && after.wrapping_sub(before) >= 6,
        "serial {before} before the rollover, {after} after it"
    );
}

/// The SOA serial `dns` serves for the signed zone.
fn serial_at(dns: std::net::SocketAddr) -> u32 {
    let reply = exchange_at(dns, &Query::new(ZONE, RecordType::SOA), Transport::Udp);
    match reply.msg.answers.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA from {dns}: {other:?}"),
    }
}

/// RFC 1982: `b` is a later serial than `a`.
fn later(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

/// The key tags of the RRSIGs over `name`/`qtype` that `dns` serves (DO=1), not verified.
fn rrsig_tags_at(dns: std::net::SocketAddr, name: &str, qtype: RecordType) -> Vec<u16> {
    let reply = exchange_at(dns, &Query::new(name, qtype).dnssec_ok(), Transport::Tcp);
    let mut tags: Vec<u16> = reply
        .msg
        .answers
        .iter()
        .filter(|r| u16::from(r.record_type()) == RRSIG)
        .map(raw)
        .filter(|d| d.len() > 18 && u16::from_be_bytes([d[0], d[1]]) == u16::from(qtype))
        .map(|d| u16::from_be_bytes([d[16], d[17]]))
        .collect();
    tags.sort();
    tags
}

/// A signed zone changes by itself (a new signature window, a key event) with nobody editing
/// its file. Its secondaries must see a higher serial then, or they keep the old signatures
/// and DNSKEY set until the signatures expire and every answer from them goes bogus.
#[test]
#[ignore = "system test: needs knotd and knotc (knot)"]
fn a_secondary_transfers_again_when_the_zone_re_signs() {
    let ns = Meridian::serve_copy(SIGNED, &["--allow-transfer", "127.0.0.1/32"]);
    let knot = crate::harness::knot::Knot::secondary(ZONE, ns.dns);
    let first = serial_at(ns.dns);
    assert_eq!(serial_at(knot.addr), first, "the secondary has the zone");
    let (old_zsk, new_zsk) = schedule_zsk_rollover(&ns);
    assert_eq!(
        rrsig_tags_at(knot.addr, "static.signed.test.", RecordType::A),
        [old_zsk]
    );
    let deadline = std::time::Duration::from_secs(15);
    crate::harness::wait_until(deadline, "the new ZSK signing at its time", || {
        signers(&ns, "static.signed.test.", RecordType::A) == [new_zsk]
    });
    let resigned = serial_at(ns.dns);
    assert!(
        later(first, resigned),
        "re-signed with the new ZSK, the serial went from {first} to {resigned}"
    );
    // What the secondary's refresh timer does: compare serials, transfer when higher.
    knot.refresh();
    crate::harness::wait_until(
        deadline,
        "the secondary transferred the re-signed zone",
        || rrsig_tags_at(knot.addr, "static.signed.test.", RecordType::A) == [new_zsk],
    );
    assert!(!later(serial_at(knot.addr), resigned));
}

#[test]
fn axfr_of_a_signed_zone_carries_verifying_rrsigs_nsecs_and_keys() {
    let ns = Meridian::serve_with(SIGNED, &["--allow-transfer", "127.0.0.1/32"]);
    let keys = dnskeys(&ns);
    let messages = crate::transfer::axfr_from(ns.dns, ZONE);
    let records: Vec<Record> = messages.iter().flat_map(|m| m.answers.clone()).collect();
    let types_at = |name: &str| -> Vec<u16> {
        let mut t: Vec<u16> = records
            .iter()
            .filter(|r| r.name.to_lowercase().to_string() == name)
            .map(|r| u16::from(r.record_type()))
            .collect();
        t.sort();
        t.dedup();
        t
    };
    // The keys go along, and every RRset but glue and the NS of a cut is signed.
    let apex = types_at(ZONE);
    for t in [2, 6, 15, DNSKEY, 59, 60, NSEC, RRSIG] {
        assert!(apex.contains(&t), "no type {t} at the apex: {apex:?}");
    }
    assert_eq!(types_at("static.signed.test."), [1, RRSIG, NSEC]);
    assert_eq!(types_at("*.wild.signed.test."), [16, RRSIG, NSEC]);
    assert_eq!(types_at("ns.child.signed.test."), [1], "glue is not signed");
    assert_eq!(
        types_at("child.signed.test."),
        [2],
        "the NS of a cut is not signed"
    );
    assert_eq!(types_at("secure.signed.test."), [2, 43, RRSIG], "DS signed");
    // Every signature verifies (the closing SOA repeats the first; sets are deduplicated).
    let signed: Vec<Record> = records
        .iter()
        .filter(|r| {
            let n = r.name.to_lowercase().to_string();
            !(n.ends_with("child.signed.test.")
                || n.ends_with(".secure.signed.test.")
                || (n == "secure.signed.test." && r.record_type() == RecordType::NS))
        })
        .cloned()
        .collect();
    let checked = verify_section(&signed, &keys);
    let nsecs = checked.iter().filter(|c| c.1 == NSEC).count();
    assert!(nsecs >= 6, "{checked:?}");
    assert!(checked.iter().any(|c| c.1 == DNSKEY), "{checked:?}");
}

#[test]
fn additional_data_of_the_zone_is_signed_and_glue_is_not() {
    let ns = Meridian::serve(SIGNED);
    let keys = dnskeys(&ns);
    let additional = |name: &str, qtype: RecordType| {
        let reply = exchange_at(ns.dns, &Query::new(name, qtype).dnssec_ok(), Transport::Tcp);
        reply
            .additionals
            .iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .cloned()
            .collect::<Vec<Record>>()
    };
    // MX and NS targets inside the zone: authoritative A records, with their RRSIGs.
    for (name, qtype, target) in [
        (ZONE, RecordType::MX, "mail.signed.test."),
        (ZONE, RecordType::NS, "ns1.signed.test."),
    ] {
        let extra = additional(name, qtype);
        let checked = verify_section(&extra, &keys);
        assert!(
            checked.iter().any(|c| c.0 == target && c.1 == 1),
            "{qtype} {name}: no signed A of {target} in {extra:?}"
        );
    }
    // A referral's glue goes unsigned.
    let glue = additional("www.child.signed.test.", RecordType::A);
    assert!(!glue.is_empty(), "no glue");
    assert!(
        glue.iter().all(|r| u16::from(r.record_type()) != RRSIG),
        "glue signed: {glue:?}"
    );
}

#[test]
fn nsec_and_rrsig_queries_answer_the_names_own_records() {
    let ns = Meridian::serve(SIGNED);
    let keys = dnskeys(&ns);
    let ask = |name: &str, qtype: RecordType| {
        exchange_at(ns.dns, &Query::new(name, qtype).dnssec_ok(), Transport::Tcp)
    };
    // NSEC: the name's own NSEC in the answer, its bitmap listing itself and RRSIG.
    for (name, want) in [
        ("static.signed.test.", vec![1, RRSIG, NSEC]),
        ("alias.signed.test.", vec![5, RRSIG, NSEC]),
        ("www.signed.test.", vec![1, 28, RRSIG, NSEC]),
        ("x.wild.signed.test.", vec![16, RRSIG, NSEC]),
    ] {
        let reply = ask(name, RecordType::Unknown(NSEC));
        assert_eq!(reply.rcode(), 0, "{name}: {reply:?}");
        let checked = verify_section(&reply.answers, &keys);
        assert_eq!(types_of(&checked), [NSEC], "{name}: {reply:?}");
        let answer_only = Reply {
            msg: {
                let mut m = reply.msg.clone();
                m.authorities = m.answers.clone();
                m
            },
            raw: reply.raw.clone(),
        };
        let (owner, next, mut types) = nsec_of(&answer_only);
        types.sort();
        assert_eq!(owner.to_lowercase().to_string(), name);
        assert_eq!(types, want, "{name}");
        assert_eq!(next[..2], [1, 0], "{name}: next is \\000.{name}");
    }
    // RRSIG: every signature at the name; each verifies over the RRset it covers.
    let sigs = ask("static.signed.test.", RecordType::Unknown(RRSIG));
    let mut covered: Vec<u16> = sigs
        .answers
        .iter()
        .map(|r| u16::from_be_bytes([raw(r)[0], raw(r)[1]]))
        .collect();
    covered.sort();
    assert_eq!(covered, [1, NSEC], "{sigs:?}");
    let a = ask("static.signed.test.", RecordType::A);
    let nsec = ask("static.signed.test.", RecordType::Unknown(NSEC));
    let mut all: Vec<Record> = sigs.answers.clone();
    all.extend(
        a.answers
            .iter()
            .chain(nsec.answers.iter())
            .filter(|r| u16::from(r.record_type()) != RRSIG)
            .cloned(),
    );
    assert_eq!(types_of(&verify_section(&all, &keys)), [1, NSEC]);
    // Without DO the zone answers as an unsigned one would: NODATA.
    let plain = exchange_at(
        ns.dns,
        &Query::new("static.signed.test.", RecordType::Unknown(NSEC)),
        Transport::Udp,
    );
    assert!(plain.answers.is_empty(), "{plain:?}");
}

#[test]
fn a_reload_with_a_broken_key_keeps_the_signed_zone() {
    let ns = Meridian::serve_copy(SIGNED, &[]);
    let keys = dnskeys(&ns);
    let base = std::fs::read_to_string(ns.zones_dir().join("signed.toml")).unwrap();
    let before = signers(&ns, "static.signed.test.", RecordType::A);
    // A key file that is not there: the reload fails, the signed zone keeps serving.
    ns.write_zone(
        "signed.toml",
        &format!("{base}[[dnssec.key]]\nfile = \"keys/Ksigned.test.+013+00001\"\n"),
    );
    ns.signal("HUP");
    crate::harness::wait_until(
        std::time::Duration::from_secs(10),
        "the reload fails",
        || ns.metric(r#"meridian_reloads_total{result="failed"}"#) >= 1.0,
    );
    assert!(ns.log().contains("dnssec.key[2]"), "{}", ns.log());
    assert_eq!(dnskeys(&ns), keys);
    assert_eq!(signers(&ns, "static.signed.test.", RecordType::A), before);
    let (_, checked) = signed_reply(&ns, &keys, "nope.signed.test.", RecordType::A);
    assert!(types_of(&checked).contains(&NSEC), "{checked:?}");
}

#[test]
fn signed_answers_that_do_not_fit_are_truncated() {
    let ns = Meridian::serve(SIGNED);
    // Every signature at the apex (seven RRsets) is more than 512 octets.
    let q = Query::new(ZONE, RecordType::Unknown(RRSIG))
        .edns(512)
        .dnssec_ok();
    let udp = exchange_at(ns.dns, &q, Transport::Udp);
    assert!(udp.metadata.truncation, "{udp:?}");
    assert!(udp.answers.is_empty(), "no partial RRsets: {udp:?}");
    let tcp = exchange_at(ns.dns, &q, Transport::Tcp);
    assert!(!tcp.metadata.truncation, "{tcp:?}");
    assert!(tcp.answers.len() >= 7, "{tcp:?}");
}

#[test]
#[ignore = "system test: needs knotd, unbound and dig"]
fn a_secondary_serving_the_transfer_validates() {
    system::require_tool("dig", "bind9-dnsutils");
    let ns = Meridian::serve_with(SIGNED, &["--allow-transfer", "127.0.0.1/32"]);
    // What a secondary stores: every record of the transfer, written in RFC 3597's generic
    // form (the closing SOA repeats the first).
    let mut lines = Vec::new();
    for msg in crate::transfer::axfr_from(ns.dns, ZONE) {
        for r in &msg.answers {
            let data = raw(r);
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            lines.push(format!(
                "{} {} IN TYPE{} \\# {} {hex}",
                r.name,
                r.ttl,
                u16::from(r.record_type()),
                data.len()
            ));
        }
    }
    lines.dedup();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zone.db");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let knot = crate::harness::knot::Knot::serve(ZONE, &file, Default::default());
    // Knot serves the signed records as they came; a validating resolver finds them secure.
    let unbound = Unbound::start(ZONE, knot.addr, &anchor_record());
    for (name, qtype, want) in [
        ("static.signed.test.", "A", "192.0.2.1"),
        ("alias.signed.test.", "A", "192.0.2.2"),
        ("txt.signed.test.", "TXT", "hello"),
        (ZONE, "MX", "mail.signed.test."),
        (ZONE, "DNSKEY", "DNSKEY"),
        ("secure.signed.test.", "DS", "56841 15 2"),
    ] {
        let out = dig_via(unbound.addr, &[name, qtype]);
        assert!(
            flags(&out).contains(" ad") && out.contains(want),
            "{name} {qtype} from the secondary:\n{out}"
        );
    }
}

#[test]
#[ignore = "system test: needs keymgr (knot)"]
fn knot_keymgr_imports_our_keys_with_the_same_tag_and_ds() {
    system::require_tool("keymgr", "knot");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for ksk in [true, false] {
        let mut args = vec!["dnssec", "keygen", "--zone", "km.test", "--dir", d];
        if ksk {
            args.push("--ksk");
        }
        let out = crate::harness::run(&args);
        assert_eq!(out.code, Some(0), "{out:?}");
    }
    let conf = dir.path().join("knot.conf");
    std::fs::create_dir(dir.path().join("kasp")).unwrap();
    std::fs::write(
        &conf,
        format!("database:\n  storage: {d}/kasp\nzone:\n  - domain: km.test.\n"),
    )
    .unwrap();
    let keymgr = |args: &[&str]| {
        let out = Command::new("timeout")
            .args([
                "-s",
                "KILL",
                "20",
                "keymgr",
                "-c",
                conf.to_str().unwrap(),
                "km.test.",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "keymgr {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut ours = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "private") {
            keymgr(&["import-bind", path.to_str().unwrap()]);
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            let tag: u16 = stem.rsplit('+').next().unwrap().parse().unwrap();
            ours.push((tag, stem));
        }
    }
    let list = keymgr(&["list"]);
    for (tag, stem) in &ours {
        let public = std::fs::read_to_string(dir.path().join(format!("{stem}.key"))).unwrap();
        let role = if public.contains("DNSKEY 257") {
            "KSK"
        } else {
            "ZSK"
        };
        assert!(
            list.contains(&format!(" {tag} {role} ECDSAP256SHA256")),
            "{tag} {role}: {list}"
        );
        if role == "KSK" {
            // Knot's DS (SHA-256) of the imported KSK is the one `meridian dnssec ds` prints.
            let knot = keymgr(&["ds"]);
            let ds = crate::harness::run(&[
                "dnssec",
                "ds",
                dir.path().join(format!("{stem}.key")).to_str().unwrap(),
            ]);
            let digest = ds.stdout.split_whitespace().last().unwrap().to_lowercase();
            assert!(
                knot.contains(&format!("DS {tag} 13 2 {digest}")),
                "{knot}\nvs\n{}",
                ds.stdout
            );
        }
    }
    assert_eq!(
        list.lines().filter(|l| l.contains(" KSK ")).count(),
        1,
        "{list}"
    );
    assert_eq!(
        list.lines().filter(|l| l.contains(" ZSK ")).count(),
        1,
        "{list}"
    );
}
