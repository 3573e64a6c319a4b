use super::*;
use axum::http::HeaderValue;

const SECRET_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SECRET_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn keyring() -> Keyring {
    let text = format!(
        "# comment line\n\
         eu-1-a  eu-1  {SECRET_A}\n\
         \n\
         eu-1-b  eu-1  {SECRET_B}   # rotated in\n\
         us-1-a  us-1  {SECRET_B}\n"
    );
    Keyring::parse(&text, Path::new("keys.txt")).unwrap()
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn report(prober: &str) -> ProbeReport {
    let mut endpoints = BTreeMap::new();
    endpoints.insert(
        EndpointKey::new("Shop.Example.", "www", "192.0.2.10".parse().unwrap()).unwrap(),
        EndpointReport {
            state: VoteState::Down,
            consecutive: 3,
            latency_us: Some(1500),
            checked_at_ms: Some(unix_ms(now())),
            reason: "status 503".into(),
            load: None,
            weight: None,
        },
    );
    endpoints.insert(
        EndpointKey::new("shop.example", "www", "2001:db8::1".parse().unwrap()).unwrap(),
        EndpointReport {
            state: VoteState::Unknown,
            consecutive: 0,
            latency_us: None,
            checked_at_ms: None,
            reason: "not checked yet".into(),
            load: None,
            weight: None,
        },
    );
    ProbeReport {
        prober_id: ProberId::new(prober),
        region: "eu-west".into(),
        boot_id: "b00t".into(),
        sequence: 7,
        sent_at_ms: unix_ms(now()),
        interval_ms: 5000,
        config_digest: "abc".into(),
        endpoints,
    }
}

fn signed(body: &[u8], key: &Key) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(KEY_ID_HEADER, HeaderValue::from_str(key.id()).unwrap());
    h.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&sign(body, key)).unwrap(),
    );
    h
}

#[test]
fn endpoint_key_round_trips_and_normalises() {
    let key = EndpointKey::new("Shop.Example.", "www", "2001:db8::1".parse().unwrap()).unwrap();
    assert_eq!(key.to_string(), "shop.example/www/2001:db8::1");
    assert_eq!(key.to_string().parse::<EndpointKey>().unwrap(), key);
    for bad in [
        "shop.example/www",
        "shop.example/www/1.2.3.4/x",
        "/www/1.2.3.4",
        "shop.example//1.2.3.4",
        "shop.example/www/not-an-ip",
    ] {
        assert!(bad.parse::<EndpointKey>().is_err(), "{bad}");
    }
}

#[test]
fn report_json_round_trips_with_string_keys() {
    let r = report("eu-1");
    let body = r.to_body().unwrap();
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains("\"shop.example/www/192.0.2.10\""), "{text}");
    assert!(text.contains("\"state\":\"down\""), "{text}");
    let back: ProbeReport = serde_json::from_slice(&body).unwrap();
    assert_eq!(back, r);
}

#[test]
fn signature_is_hmac_sha256_hex() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?". The key is
    // shorter than MIN_SECRET_BYTES, so build the ring key directly for this vector.
    let key = Key {
        id: "t".into(),
        prober_id: ProberId::new("p"),
        mac: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe"),
    };
    assert_eq!(
        sign(b"what do ya want for nothing?", &key),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn keyring_parses_and_picks_last_key_for_signing() {
    let ring = keyring();
    assert_eq!(ring.len(), 3);
    assert_eq!(ring.get("eu-1-a").unwrap().prober_id().as_str(), "eu-1");
    assert_eq!(
        ring.signing_key(&ProberId::new("eu-1")).unwrap().id(),
        "eu-1-b"
    );
    assert!(ring.signing_key(&ProberId::new("nobody")).is_none());
    assert!(!format!("{:?}", ring.get("eu-1-a").unwrap()).contains(SECRET_A));
}

#[test]
fn keyring_rejects_bad_files() {
    let cases: &[(&str, &str)] = &[
        ("k p", "keys.txt:1: expected"),
        (&format!("k p {SECRET_A} extra"), "keys.txt:1: expected"),
        ("k p zz", "keys.txt:1: secret is not hex"),
        ("k p 0011", "keys.txt:1: secret is 2 bytes"),
        (&format!("k/x p {SECRET_A}"), "key id `k/x`"),
        (
            &format!("k p {SECRET_A}\nk q {SECRET_B}"),
            "keys.txt:2: key id `k` is already defined",
        ),
        (
            &format!("a p {SECRET_A}\nb p {SECRET_A}\nc p {SECRET_A}"),
            "keys.txt:3: prober `p` has more than 2 keys",
        ),
    ];
    for (text, want) in cases {
        let err = Keyring::parse(text, Path::new("keys.txt")).unwrap_err();
        assert!(err.to_string().contains(want), "{text:?}: {err}");
    }
}

#[test]
fn keyring_load_names_missing_file() {
    let err = Keyring::load(Path::new("/nonexistent/keys.txt")).unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/keys.txt: "),
        "{err}"
    );
}

#[test]
fn verify_accepts_both_rotation_keys() {
    let ring = keyring();
    let body = report("eu-1").to_body().unwrap();
    for id in ["eu-1-a", "eu-1-b"] {
        let key = ring.get(id).unwrap();
        let got = verify(&signed(&body, key), &body, &ring, now()).unwrap();
        assert_eq!(got.sequence, 7);
    }
}

#[test]
fn verify_rejections() {
    let ring = keyring();
    let key = ring.get("eu-1-a").unwrap();
    let good = report("eu-1").to_body().unwrap();

    let mut tampered = good.clone();
    let pos = tampered.iter().position(|&b| b == b'7').unwrap();
    tampered[pos] = b'8';

    let mut unknown = signed(&good, key);
    unknown.insert(KEY_ID_HEADER, HeaderValue::from_static("nope"));
    let mut no_sig = signed(&good, key);
    no_sig.remove(SIGNATURE_HEADER);
    let mut not_hex = signed(&good, key);
    not_hex.insert(SIGNATURE_HEADER, HeaderValue::from_static("xyz"));

    let garbage = b"{not json".to_vec();
    let mut zero_interval = report("eu-1");
    zero_interval.interval_ms = 0;
    let zero_interval = zero_interval.to_body().unwrap();
    let mut old = report("eu-1");
    old.sent_at_ms -= 31_000;
    let old = old.to_body().unwrap();
    let mut future = report("eu-1");
    future.sent_at_ms += 31_000;
    let future = future.to_body().unwrap();
    let mut edge = report("eu-1");
    edge.sent_at_ms -= 30_000;
    let edge = edge.to_body().unwrap();
    let other_prober = report("us-1").to_body().unwrap();
    let huge = vec![b' '; MAX_REPORT_BYTES + 1];

    type Case<'a> = (&'a str, HeaderMap, &'a [u8], Result<(), RejectReason>);
    let cases: Vec<Case<'_>> = vec![
        ("good", signed(&good, key), &good, Ok(())),
        ("edge of skew", signed(&edge, key), &edge, Ok(())),
        (
            "oversize",
            signed(&huge, key),
            &huge,
            Err(RejectReason::Oversize),
        ),
        ("unknown key", unknown, &good, Err(RejectReason::UnknownKey)),
        (
            "no key header",
            HeaderMap::new(),
            &good,
            Err(RejectReason::UnknownKey),
        ),
        (
            "no signature",
            no_sig,
            &good,
            Err(RejectReason::BadSignature),
        ),
        (
            "signature not hex",
            not_hex,
            &good,
            Err(RejectReason::BadSignature),
        ),
        (
            "tampered body",
            signed(&good, key),
            &tampered,
            Err(RejectReason::BadSignature),
        ),
        (
            "garbage",
            signed(&garbage, key),
            &garbage,
            Err(RejectReason::Malformed),
        ),
        (
            "zero interval",
            signed(&zero_interval, key),
            &zero_interval,
            Err(RejectReason::Malformed),
        ),
        ("old", signed(&old, key), &old, Err(RejectReason::StaleTime)),
        (
            "future",
            signed(&future, key),
            &future,
            Err(RejectReason::StaleTime),
        ),
        (
            "signed by eu-1 for us-1",
            signed(&other_prober, key),
            &other_prober,
            Err(RejectReason::ProberMismatch),
        ),
    ];
    for (name, headers, body, want) in cases {
        let got = verify(&headers, body, &ring, now()).map(|_| ());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn reject_labels_and_statuses_are_distinct_4xx() {
    let mut labels: Vec<_> = RejectReason::ALL.iter().map(|r| r.label()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), RejectReason::ALL.len());
    for r in RejectReason::ALL {
        assert!(r.status().is_client_error(), "{r:?}");
    }
}

/// Rolling upgrades: a new nameserver takes an old prober's report as it is; a new prober
/// whose checks report no load or weight sends exactly the old format (older nameservers deny
/// unknown fields); a report with them is signed and verified like any other.
#[test]
fn report_format_stays_compatible_both_ways() {
    let key = keyring()
        .signing_key(&ProberId::new("eu-1"))
        .cloned()
        .unwrap();
    // As a prober before issue 16 wrote it.
    let old = format!(
        r#"{{"prober_id":"eu-1","region":"eu","boot_id":"b","sequence":1,"sent_at_ms":{},"interval_ms":5000,"config_digest":"d","endpoints":{{"shop.example/www/192.0.2.10":{{"state":"up","consecutive":3,"latency_us":1200,"checked_at_ms":1,"reason":"ok"}}}}}}"#,
        unix_ms(now())
    );
    let r = verify(
        &signed(old.as_bytes(), &key),
        old.as_bytes(),
        &keyring(),
        now(),
    )
    .unwrap();
    let ep = r.endpoints.values().next().unwrap();
    assert_eq!((ep.load, ep.weight), (None, None));

    let new_without = String::from_utf8(report("eu-1").to_body().unwrap()).unwrap();
    assert!(
        !new_without.contains("\"load\"") && !new_without.contains("\"weight\""),
        "{new_without}"
    );

    let mut with = report("eu-1");
    for ep in with.endpoints.values_mut() {
        ep.load = Some(0.5);
        ep.weight = Some(200);
    }
    let body = with.to_body().unwrap();
    let back = verify(&signed(&body, &key), &body, &keyring(), now()).unwrap();
    assert_eq!(back, with);
    // Any other unknown field is still refused, after the signature check.
    let odd = String::from_utf8(body)
        .unwrap()
        .replace("\"load\":0.5", "\"load\":0.5,\"queue\":3");
    assert_eq!(
        verify(
            &signed(odd.as_bytes(), &key),
            odd.as_bytes(),
            &keyring(),
            now()
        ),
        Err(RejectReason::Malformed)
    );
}

/// Issue 16: one prober checks 10,000 endpoints; its report must fit the body limit with
/// room to spare (longer names, IPv6 addresses, loads and weight hints, failure reasons).
#[test]
fn a_report_of_ten_thousand_endpoints_fits_the_limit() {
    let mut r = report("eu-1");
    r.endpoints = (0..10_000u32)
        .map(|n| {
            let [_, _, a, b] = n.to_be_bytes();
            let key = EndpointKey::new(
                "traffic.shop.example.",
                &format!("service-{}", n / 100),
                format!("2001:db8:ffff:{a:x}::{b:x}").parse().unwrap(),
            )
            .unwrap();
            let e = EndpointReport {
                state: VoteState::Down,
                consecutive: 123,
                latency_us: Some(499_999),
                checked_at_ms: Some(unix_ms(now())),
                reason: "connect: network unreachable".into(),
                load: Some(0.123_456_789),
                weight: Some(1000),
            };
            (key, e)
        })
        .collect();
    let body = r.to_body().unwrap();
    assert!(
        body.len() * 3 / 2 < MAX_REPORT_BYTES,
        "{} bytes, limit {MAX_REPORT_BYTES}",
        body.len()
    );
}
