use std::str::FromStr;

use super::*;
use crate::dnssec::key::{Algorithm, KeyTiming};

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap_or_else(|e| panic!("{e}"))
}

fn key(ksk: bool, timing: KeyTiming) -> Arc<ZoneKey> {
    let mut k = ZoneKey::generate(&name("example.test."), Algorithm::Ed25519, ksk, 0)
        .unwrap_or_else(|e| panic!("{e}"));
    k.timing = timing;
    Arc::new(k)
}

const NOW: u64 = 1_796_174_100;

#[test]
fn windows_are_aligned_so_recompiles_reuse_them() {
    let p = SigningPolicy::default();
    let (v, next) = p.window(NOW);
    assert_eq!(p.window(NOW + 60).0, v);
    assert!(u64::from(v.expiration) - NOW >= DEFAULT_REFRESH);
    assert!(u64::from(v.inception) <= NOW - DEFAULT_INCEPTION_OFFSET);
    assert_eq!(
        next - (u64::from(v.inception) + DEFAULT_INCEPTION_OFFSET),
        DEFAULT_VALIDITY - DEFAULT_REFRESH
    );
    assert_ne!(p.window(next).0, v);
    // At the last second of a window, more than `refresh` of validity remains.
    assert!(u64::from(v.expiration) - (next - 1) > DEFAULT_REFRESH);
}

/// RFC 1982: `b` is a later serial than `a`.
fn later(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

#[test]
fn the_served_serial_rises_with_each_signature_window_and_key_event() {
    let step = DEFAULT_VALIDITY - DEFAULT_REFRESH;
    let (_, next_window) = SigningPolicy::default().window(NOW);
    let rollover = next_window - step / 2;
    let ksk = key(true, KeyTiming::default());
    let old = key(
        false,
        KeyTiming {
            retire: Some(rollover),
            ..Default::default()
        },
    );
    let new = key(
        false,
        KeyTiming {
            publish: Some(rollover - 3600),
            activate: Some(rollover),
            ..Default::default()
        },
    );
    let d = ZoneDnssec::new(vec![ksk, old, new], SigningPolicy::default());
    let configured = 2_026_120_201;
    // Within one window and between key events nothing changes: every compile (health
    // changes, other nameservers) serves the same serial.
    let start = next_window - step;
    assert_eq!(
        d.serial(configured, start),
        d.serial(configured, start + 60)
    );
    assert_eq!(
        d.serial(configured, start + 60),
        configured.wrapping_add((start - SERIAL_EPOCH) as u32)
    );
    // Each moment the zone re-signs by itself is a later serial: the new ZSK published, then
    // signing, then a new window.
    let moments = [start, rollover - 3600, rollover, next_window];
    for pair in moments.windows(2) {
        let (a, b) = (d.serial(configured, pair[0]), d.serial(configured, pair[1]));
        assert!(later(a, b), "{a} at {} then {b} at {}", pair[0], pair[1]);
        assert_eq!(
            d.serial(configured, pair[1] - 1),
            a,
            "no change before {}",
            pair[1]
        );
    }
    // Raising the configured serial raises the served one; near the top it wraps as RFC 1982
    // serials do and is still later.
    assert!(later(
        d.serial(configured, NOW),
        d.serial(configured + 1, NOW)
    ));
    assert!(later(
        d.serial(u32::MAX - 5, NOW),
        d.serial(u32::MAX - 5, next_window)
    ));
    // Turning signing on is a later serial than the unsigned zone's.
    assert!(later(configured, d.serial(configured, NOW)));
}

#[test]
fn roles_csk_ksk_zsk_and_timing() {
    let csk = ZoneDnssec::new(
        vec![key(true, KeyTiming::default())],
        SigningPolicy::default(),
    );
    let r = csk.roles(NOW);
    assert_eq!(
        (r.zone_signers.len(), r.dnskey_signers.len(), r.parent.len()),
        (1, 1, 1)
    );

    let ksk = key(true, KeyTiming::default());
    let old = key(
        false,
        KeyTiming {
            retire: Some(NOW),
            remove: Some(NOW + 100),
            ..Default::default()
        },
    );
    let new = key(
        false,
        KeyTiming {
            publish: Some(NOW - 100),
            activate: Some(NOW),
            ..Default::default()
        },
    );
    let split = ZoneDnssec::new(
        vec![ksk.clone(), old.clone(), new.clone()],
        SigningPolicy::default(),
    );
    let before = split.roles(NOW - 1);
    assert_eq!(
        before
            .zone_signers
            .iter()
            .map(|k| k.tag)
            .collect::<Vec<_>>(),
        [old.tag]
    );
    assert_eq!(
        before.published.len(),
        3,
        "pre-published ZSK is in the DNSKEY set"
    );
    let after = split.roles(NOW);
    assert_eq!(
        after.zone_signers.iter().map(|k| k.tag).collect::<Vec<_>>(),
        [new.tag]
    );
    assert_eq!(
        after
            .dnskey_signers
            .iter()
            .map(|k| k.tag)
            .collect::<Vec<_>>(),
        [ksk.tag]
    );
    assert_eq!(split.roles(NOW + 100).published.len(), 2);
    assert_eq!(split.next_event(NOW - 1), NOW);
    assert_eq!(split.next_event(NOW), NOW + 100);

    let apex = split.apex_records(&name("example.test."), NOW);
    let count = |t: u16| {
        apex.iter()
            .filter(|r| u16::from(r.record_type()) == t)
            .count()
    };
    assert_eq!(
        (count(TYPE_DNSKEY), count(TYPE_CDS), count(TYPE_CDNSKEY)),
        (3, 1, 1)
    );

    let none = ZoneDnssec::new(
        vec![key(
            false,
            KeyTiming {
                activate: Some(NOW + 1),
                ..Default::default()
            },
        )],
        SigningPolicy::default(),
    );
    assert!(none.signer(&name("example.test."), 300, NOW).is_none());
}

#[test]
fn static_signatures_are_made_once_per_epoch_and_pruned() {
    let z = ZoneDnssec::new(
        vec![key(true, KeyTiming::default())],
        SigningPolicy::default(),
    );
    let origin = name("example.test.");
    let owner = canonical_name(&name("www.example.test."));
    let a: &[u8] = &[192, 0, 2, 1];
    let first = z
        .signer(&origin, 300, NOW)
        .unwrap_or_else(|| panic!("signer"));
    let s1 = first.sign_static(&owner, 1, 60, &[a]);
    first.finish_compile();
    let second = z
        .signer(&origin, 300, NOW + 10)
        .unwrap_or_else(|| panic!("signer"));
    let s2 = second.sign_static(&owner, 1, 60, &[a]);
    assert!(
        Arc::ptr_eq(&s1, &s2),
        "a recompile in the same window signs nothing again"
    );
    let other = second.sign_static(&owner, 1, 120, &[a]);
    assert!(!Arc::ptr_eq(&s1, &other));
    second.finish_compile();
    assert_eq!(z.state.stored(), 2);
    let third = z
        .signer(&origin, 300, NOW + 20)
        .unwrap_or_else(|| panic!("signer"));
    let _ = third.sign_static(&owner, 1, 60, &[a]);
    third.finish_compile();
    assert_eq!(
        z.state.stored(),
        1,
        "sets no table uses any more are dropped"
    );
    // A new window re-signs.
    let later = z
        .signer(&origin, 300, NOW + DEFAULT_VALIDITY)
        .unwrap_or_else(|| panic!("signer"));
    assert!(!Arc::ptr_eq(&s1, &later.sign_static(&owner, 1, 60, &[a])));
}

#[test]
fn compact_denial_nsec_has_nxname_and_successor() {
    let z = ZoneDnssec::new(
        vec![key(true, KeyTiming::default())],
        SigningPolicy::default(),
    );
    let signer = z
        .signer(&name("example.test."), 300, NOW)
        .unwrap_or_else(|| panic!("signer"));
    let qname = canonical_name(&name("nope.example.test."));
    let mut rdata = Vec::new();
    let entry = signer
        .nsec_dynamic(&qname, &ZoneSigner::NXNAME_TYPES, &mut rdata)
        .unwrap_or_else(|| panic!("signed"));
    assert_eq!(entry.sigs.len(), 1);
    assert!(rdata.starts_with(b"\x01\x00\x04nope\x07example\x04test\x00"));
    // Window 0: RRSIG(46), NSEC(47), NXNAME(128).
    assert_eq!(
        rdata.get(rdata.len() - 19..),
        Some(
            &[
                0u8, 17, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80
            ][..]
        )
    );
    let again = signer.nsec_dynamic(&qname, &ZoneSigner::NXNAME_TYPES, &mut rdata);
    assert!(again.is_some_and(|e| Arc::ptr_eq(&e, &entry)));
}
