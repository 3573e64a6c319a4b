//! Property tests of probe report ingest (stable-toolchain counterpart of `fuzz/report`):
//! generated reports survive sign -> verify unchanged, any change to a signed body is
//! rejected as a bad signature, timestamps outside the allowed skew are rejected, and no body
//! or key file text, however malformed, makes `verify` or `Keyring::parse` panic.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

const SECRET: [u8; 32] = [0x5a; 32];

fn key() -> Key {
    Key::new("k1", ProberId::new("p1"), &SECRET).unwrap()
}

fn keyring() -> Keyring {
    Keyring::from_keys([key()]).unwrap()
}

fn headers(key_id: &str, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(key_id) {
        h.insert(KEY_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(signature) {
        h.insert(SIGNATURE_HEADER, v);
    }
    h
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn endpoint_key() -> impl Strategy<Value = EndpointKey> {
    (
        prop::sample::select(vec!["example.test", "Shop.Example.", "a.b.c"]),
        "[a-z][a-z0-9-]{0,10}",
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ],
    )
        .prop_filter_map("valid key", |(zone, service, ip)| {
            EndpointKey::new(zone, &service, ip).ok()
        })
}

fn endpoint_report() -> impl Strategy<Value = EndpointReport> {
    (
        prop::sample::select(vec![VoteState::Up, VoteState::Down, VoteState::Unknown]),
        any::<u32>(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        ".{0,40}",
    )
        .prop_map(
            |(state, consecutive, latency_us, checked_at_ms, reason)| EndpointReport {
                state,
                consecutive,
                latency_us,
                checked_at_ms,
                reason,
                load: None,
                weight: None,
            },
        )
}

/// A report that `verify` must accept at [`now`] when signed by [`key`].
fn valid_report() -> impl Strategy<Value = ProbeReport> {
    (
        ".{1,20}",
        ".{1,20}",
        any::<u64>(),
        -29_000i64..29_000,
        1_000u64..=3_600_000,
        ".{0,20}",
        prop::collection::btree_map(endpoint_key(), endpoint_report(), 0..8),
    )
        .prop_map(
            |(region, boot_id, sequence, skew_ms, interval_ms, config_digest, endpoints)| {
                ProbeReport {
                    prober_id: ProberId::new("p1"),
                    region,
                    boot_id,
                    sequence,
                    sent_at_ms: unix_ms(now()).saturating_add_signed(skew_ms),
                    interval_ms,
                    config_digest,
                    endpoints: endpoints.into_iter().collect::<BTreeMap<_, _>>(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn signed_valid_reports_verify_unchanged(report in valid_report()) {
        let body = report.to_body().unwrap();
        let h = headers("k1", &sign(&body, &key()));
        prop_assert_eq!(verify(&h, &body, &keyring(), now()), Ok(report));
    }

    #[test]
    fn any_change_to_a_signed_body_is_a_bad_signature(
        report in valid_report(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let body = report.to_body().unwrap();
        let signature = sign(&body, &key());
        let mut tampered = body.clone();
        let i = at.index(tampered.len());
        tampered[i] ^= flip;
        prop_assert_eq!(
            verify(&headers("k1", &signature), &tampered, &keyring(), now()),
            Err(RejectReason::BadSignature)
        );
    }

    #[test]
    fn reports_outside_the_clock_skew_are_stale(
        report in valid_report(),
        skew_s in prop_oneof![31i64..100_000, -100_000i64..-31],
    ) {
        let mut report = report;
        report.sent_at_ms = unix_ms(now()).saturating_add_signed(skew_s * 1000);
        let body = report.to_body().unwrap();
        let h = headers("k1", &sign(&body, &key()));
        prop_assert_eq!(verify(&h, &body, &keyring(), now()), Err(RejectReason::StaleTime));
    }

    #[test]
    fn arbitrary_signed_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let h = headers("k1", &sign(&body, &key()));
        // Random bytes are never a valid report; the point is that verify returns.
        prop_assert!(verify(&h, &body, &keyring(), now()).is_err());
    }

    #[test]
    fn arbitrary_headers_never_verify(
        key_id in ".{0,12}",
        signature in "[0-9a-fA-F]{0,70}|.{0,70}",
        report in valid_report(),
    ) {
        let body = report.to_body().unwrap();
        prop_assume!(signature.to_ascii_lowercase() != sign(&body, &key()));
        prop_assert!(verify(&headers(&key_id, &signature), &body, &keyring(), now()).is_err());
    }

    #[test]
    fn keyring_parse_never_panics(text in "((#.*|[a-z0-9-]{0,8}( +[a-z0-9-]{0,8}( +[0-9a-f]{0,70})?)?)\n){0,6}|.{0,200}") {
        let _ = Keyring::parse(&text, Path::new("keys.txt"));
    }
}
