//! Signs compiled zones and checks every signature with ring, rebuilding the signed data
//! independently of `sign.rs` (RFC 4034 §3.1.8.1), and the NSEC bitmaps.

use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::Name;

use super::*;
use crate::dnssec::key::{Algorithm, ZoneKey, canonical_name};
use crate::dnssec::time::now;
use crate::geo::GeoDb;
use crate::routing::compile::{AllUp, compile, key_wire};
use crate::routing::table::RoutingTable;

const ZONE: &str = r#"
origin = "Signed.Test."
ns = ["ns1.signed.test."]
[soa]
mname = "ns1.signed.test."
rname = "admin.signed.test."
serial = 7
minimum = 60
[[record]]
name = "ns1"
type = "A"
data = ["192.0.2.53"]
[[record]]
name = "@"
type = "MX"
data = ["10 Mail.Signed.Test."]
[[record]]
name = "mail"
type = "A"
data = ["192.0.2.25", "192.0.2.26"]
[[record]]
name = "alias"
type = "CNAME"
data = ["mail"]
[[record]]
name = "*.wild"
type = "TXT"
data = ["\"hello\""]
[[record]]
name = "child"
type = "NS"
data = ["ns.child.signed.test."]
[[record]]
name = "ns.child"
type = "A"
data = ["192.0.2.99"]
[region.eu]
[service.www]
endpoint = [{ region = "eu", address = "192.0.2.10" }, { region = "eu", address = "2001:db8::10" }]
[dnssec]
[[dnssec.key]]
file = "KSK"
[[dnssec.key]]
file = "ZSK"
"#;

/// Writes a KSK and a ZSK of `alg` beside the zone file, loads and compiles the zone.
fn table(alg: Algorithm) -> (RoutingTable, Vec<Arc<ZoneKey>>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let origin = Name::from_ascii("signed.test.").unwrap_or_else(|e| panic!("{e}"));
    let mut files = Vec::new();
    for (ksk, stem) in [(true, "KSK"), (false, "ZSK")] {
        let key = ZoneKey::generate(&origin, alg, ksk, 0).unwrap_or_else(|e| panic!("{e}"));
        files.push((format!("{stem}.key"), key.key_file_text()));
        files.push((format!("{stem}.private"), key.private_file_text()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    drop(dir);
    let zone = crate::config::testing::zone_from_text(ZONE, &refs);
    let keys = zone
        .dnssec
        .as_ref()
        .map(|d| d.keys.clone())
        .unwrap_or_default();
    let geo = Arc::new(
        GeoDb::open(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/geoip/meridian-sample.txt"
        )))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let table = compile(&[Arc::new(zone)], geo, &AllUp, 1).unwrap_or_else(|e| panic!("{e}"));
    (table, keys)
}

/// Verifies RRSIG RDATA `sig` over (owner, rtype, rdatas) with one of `keys`.
fn verify(keys: &[Arc<ZoneKey>], sig: &[u8], owner: &[u8], rtype: u16, rdatas: &[Vec<u8>]) {
    let head_fixed = sig.get(..18).unwrap_or_else(|| panic!("short RRSIG"));
    assert_eq!(u16::from_be_bytes([head_fixed[0], head_fixed[1]]), rtype);
    let ttl = u32::from_be_bytes([head_fixed[4], head_fixed[5], head_fixed[6], head_fixed[7]]);
    let tag = u16::from_be_bytes([head_fixed[16], head_fixed[17]]);
    let signer =
        canonical_name(&Name::from_ascii("signed.test.").unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(sig.get(18..18 + signer.len()), Some(&signer[..]));
    let head = &sig[..18 + signer.len()];
    let signature = &sig[18 + signer.len()..];
    let mut sorted = rdatas.to_vec();
    sorted.sort();
    let mut data = head.to_vec();
    for r in &sorted {
        data.extend_from_slice(owner);
        data.extend_from_slice(&rtype.to_be_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&ttl.to_be_bytes());
        data.extend_from_slice(&(r.len() as u16).to_be_bytes());
        data.extend_from_slice(r);
    }
    let key = keys
        .iter()
        .find(|k| k.tag == tag)
        .unwrap_or_else(|| panic!("no key {tag}"));
    let (alg, public): (&dyn ring::signature::VerificationAlgorithm, Vec<u8>) = match key.algorithm
    {
        Algorithm::EcdsaP256Sha256 => (
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            [&[4u8][..], &key.public].concat(),
        ),
        Algorithm::Ed25519 => (&ring::signature::ED25519, key.public.clone()),
    };
    ring::signature::UnparsedPublicKey::new(alg, &public)
        .verify(&data, signature)
        .unwrap_or_else(|e| panic!("bad signature over type {rtype}: {e}"));
}

fn sign(table: &RoutingTable) -> (SignedZone, &ZoneTable) {
    let zone = table.zones().next().unwrap_or_else(|| panic!("zone"));
    let dnssec = zone
        .source
        .dnssec
        .as_ref()
        .unwrap_or_else(|| panic!("signed"));
    (
        SignedZone::build(zone, dnssec, now()).unwrap_or_else(|| panic!("active key")),
        zone,
    )
}

#[test]
fn every_authoritative_rrset_is_signed_and_verifies() {
    for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
        let (table, keys) = table(alg);
        let (signed, zone) = sign(&table);
        let (ksk, zsk): (Vec<_>, Vec<_>) = keys.iter().cloned().partition(|k| k.is_ksk());
        let mut seen = Vec::new();
        for (i, node) in zone.node_list.iter().enumerate() {
            let sigs = signed.node(i).unwrap_or_else(|| panic!("node"));
            for rrset in &node.rrsets {
                let rdatas: Vec<Vec<u8>> = rrset
                    .rdata
                    .iter()
                    .map(|r| canonical(rrset.rtype, r))
                    .collect();
                let got = sigs.rrsigs(rrset.rtype);
                let expect_signed =
                    node.occluded_by.is_none() && (!node.cut || rrset.rtype == TYPE_DS);
                assert_eq!(
                    !got.is_empty(),
                    expect_signed,
                    "type {} at {:?}",
                    rrset.rtype,
                    sigs.owner
                );
                let by = if rrset.rtype == 48 { &ksk } else { &zsk };
                for s in got {
                    verify(by, s, &sigs.owner, rrset.rtype, &rdatas);
                }
                if !got.is_empty() {
                    seen.push(rrset.rtype);
                }
            }
            if let Some(nsec) = &sigs.nsec {
                for s in nsec.sigs.iter() {
                    verify(&zsk, s, &sigs.owner, 47, &[nsec.rdata.to_vec()]);
                }
            }
        }
        for t in [1u16, 6, 15, 5, 16, 48, 59, 60] {
            assert!(seen.contains(&t), "{alg}: no signed RRset of type {t}");
        }
        // The MX target is lowercased in what was signed (RFC 4034 §6.2).
        assert!(signed.soa.len() == 1);
    }
}

#[test]
fn nsec_bitmaps_show_the_types_of_each_name() {
    let (table, _) = table(Algorithm::Ed25519);
    let (signed, zone) = sign(&table);
    let types_at = |name: &str| -> Vec<u16> {
        let idx = *zone
            .nodes
            .get(&key_wire(
                &Name::from_ascii(name).unwrap_or_else(|e| panic!("{e}")),
            ))
            .unwrap_or_else(|| panic!("{name}"));
        let sigs = signed
            .node(idx as usize)
            .unwrap_or_else(|| panic!("{name}"));
        let nsec = sigs
            .nsec
            .as_ref()
            .unwrap_or_else(|| panic!("nsec at {name}"));
        let next = crate::dnssec::sign::successor(&sigs.owner);
        assert!(nsec.rdata.starts_with(&next));
        bitmap_types(&nsec.rdata[next.len()..])
    };
    assert_eq!(types_at("signed.test."), [2, 6, 15, 46, 47, 48, 59, 60]);
    assert_eq!(types_at("www.signed.test."), [1, 28, 46, 47]);
    assert_eq!(types_at("alias.signed.test."), [5, 46, 47]);
    assert_eq!(
        types_at("wild.signed.test."),
        [46, 47],
        "empty non-terminal"
    );
    assert_eq!(
        types_at("child.signed.test."),
        [2, 46, 47],
        "delegation without DS"
    );
    let glue = *zone
        .nodes
        .get(&key_wire(
            &Name::from_ascii("ns.child.signed.test.").unwrap_or_else(|e| panic!("{e}")),
        ))
        .unwrap_or_else(|| panic!("glue"));
    assert!(signed.node(glue as usize).is_some_and(|n| n.nsec.is_none()));
}

fn bitmap_types(mut bitmap: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    while let [window, len, rest @ ..] = bitmap {
        let (bits, tail) = rest.split_at(usize::from(*len));
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    out.push(u16::from(*window) * 256 + (i * 8 + bit) as u16);
                }
            }
        }
        bitmap = tail;
    }
    out
}

#[test]
fn recompiling_signs_nothing_again() {
    let (table, _) = table(Algorithm::EcdsaP256Sha256);
    let (first, zone) = sign(&table);
    let (second, _) = sign(&table);
    let apex = *zone
        .nodes
        .get(&key_wire(&zone.origin))
        .unwrap_or_else(|| panic!("apex"));
    let a = first.node(apex as usize).map(|n| n.rrsigs(6).to_vec());
    let b = second.node(apex as usize).map(|n| n.rrsigs(6).to_vec());
    assert_eq!(a, b, "ECDSA signatures are random: equal means reused");
}

#[test]
fn a_compile_whose_keys_and_signers_straddle_a_second_is_redone() {
    let (mut table, _) = table(Algorithm::EcdsaP256Sha256);
    let zone = table
        .zones
        .values_mut()
        .next()
        .and_then(std::sync::Arc::get_mut)
        .unwrap_or_else(|| panic!("zone"));
    // The compile chose the DNSKEY set at `now()`; signing after the next event (here, the
    // end of the signature window) disagrees with it.
    let chosen = APEX_AT.with(std::cell::Cell::get);
    assert!(chosen > 0);
    let event = zone
        .source
        .dnssec
        .as_ref()
        .map(|d| d.next_event(chosen))
        .unwrap_or_else(|| panic!("signed"));
    STALE.store(false, std::sync::atomic::Ordering::Relaxed);
    // A second later with no event between: nothing to redo.
    APEX_AT.with(|at| at.set(event - 2));
    super::sign(zone, event - 1);
    assert!(!STALE.load(std::sync::atomic::Ordering::Relaxed));
    APEX_AT.with(|at| at.set(chosen));
    super::sign(zone, event);
    assert!(STALE.swap(false, std::sync::atomic::Ordering::Relaxed));
}
