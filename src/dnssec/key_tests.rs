use super::*;

/// RFC 6605 §6.1: the P-256 example key and its DS.
pub(crate) const RFC6605_KEY: &str = "example.net. 3600 IN DNSKEY 257 3 13 (
        GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edb
        krSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA== )\n";
pub(crate) const RFC6605_PRIVATE: &str = "Private-key-format: v1.2
Algorithm: 13 (ECDSAP256SHA256)
PrivateKey: GU6SnQ/Ou+xC5RumuIUIuJZteXT2z0O/ok1s38Et6mQ=\n";

/// RFC 8080 §6.1: the Ed25519 example key.
pub(crate) const RFC8080_KEY: &str = "example.com. 3600 IN DNSKEY 257 3 15 (
             l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4= )\n";
pub(crate) const RFC8080_PRIVATE: &str = "Private-key-format: v1.2
Algorithm: 15 (ED25519)
PrivateKey: ODIyNjAzODQ2MjgwODAxMjI2NDUxOTAyMDQxNDIyNjI=\n";

/// Writes a `.key`/`.private` pair named `stem` into `dir` and loads it for `zone`.
pub(crate) fn load_text(
    dir: &Path,
    stem: &str,
    key: &str,
    private: &str,
    zone: &str,
) -> Result<ZoneKey, KeyError> {
    let base = dir.join(stem);
    std::fs::write(base.with_extension_key(), key).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(base.with_extension_private(), private).unwrap_or_else(|e| panic!("{e}"));
    ZoneKey::load(
        &base,
        &Name::from_ascii(zone).unwrap_or_else(|e| panic!("{e}")),
    )
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rfc6605_key_gives_the_published_tag_and_ds() {
    let d = dir();
    let key = load_text(
        d.path(),
        "Kexample.net.+013+55648",
        RFC6605_KEY,
        RFC6605_PRIVATE,
        "example.net.",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key.tag, 55648);
    assert!(key.is_ksk());
    assert_eq!(
        key.ds_text(),
        "example.net. IN DS 55648 13 2 B4C8C1FE2E7477127B27115656AD6256F424625BF5C1E2770CE6D6E37DF61D17"
    );
}

#[test]
fn rfc8080_key_gives_the_published_tag_and_ds() {
    let d = dir();
    let key = load_text(
        d.path(),
        "Kexample.com.+015+03613",
        RFC8080_KEY,
        RFC8080_PRIVATE,
        "example.com.",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key.tag, 3613);
    assert_eq!(
        key.ds_text(),
        "example.com. IN DS 3613 15 2 3AA5AB37EFCE57F737FC1627013FEE07BDF241BD10F3B1964AB55C78E79A304B"
    );
}

#[test]
fn generated_keys_round_trip_through_bind_files_and_sign() {
    let zone = Name::from_ascii("Gslb.Example.com.").unwrap_or_else(|e| panic!("{e}"));
    for (alg, ksk) in [
        (Algorithm::EcdsaP256Sha256, true),
        (Algorithm::EcdsaP256Sha256, false),
        (Algorithm::Ed25519, true),
        (Algorithm::Ed25519, false),
    ] {
        let key =
            ZoneKey::generate(&zone, alg, ksk, 1_796_174_100).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.is_ksk(), ksk);
        let d = dir();
        let base = key.write_files(d.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            base.file_name().and_then(|n| n.to_str()),
            Some(format!("Kgslb.example.com.+{:03}+{:05}", alg.number(), key.tag).as_str())
        );
        // Writing again refuses to overwrite.
        assert!(key.write_files(d.path()).is_err());
        let loaded =
            ZoneKey::load(&base.with_extension_key(), &zone).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.tag, key.tag);
        assert_eq!(loaded.dnskey_rdata(), key.dnskey_rdata());
        assert_eq!(loaded.timing.activate, Some(1_796_174_100));
        let sig = loaded.sign(b"data").unwrap_or_else(|| panic!("sign"));
        let (verify, public): (&dyn ring::signature::VerificationAlgorithm, Vec<u8>) = match alg {
            Algorithm::EcdsaP256Sha256 => (
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                [&[4u8][..], &key.public].concat(),
            ),
            Algorithm::Ed25519 => (&ring::signature::ED25519, key.public.clone()),
        };
        ring::signature::UnparsedPublicKey::new(verify, &public)
            .verify(b"data", &sig)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(base.with_extension_private())
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            assert_eq!(mode, 0o600);
        }
    }
}

#[test]
fn bad_key_files_are_errors_naming_the_file() {
    let d = dir();
    let wrong = load_text(
        d.path(),
        "Kexample.net.+013+55648",
        RFC6605_KEY,
        RFC6605_PRIVATE,
        "other.net.",
    );
    assert!(
        matches!(wrong, Err(KeyError::WrongZone { .. })),
        "{wrong:?}"
    );
    let msg = wrong.map(|_| ()).unwrap_err().to_string();
    assert!(
        msg.contains("Kexample.net.+013+55648.key") && msg.contains("other.net."),
        "{msg}"
    );

    let rsa_key = "example.net. IN DNSKEY 257 3 8 AwEAAQ==\n";
    let rsa_private = "Private-key-format: v1.3\nAlgorithm: 8 (RSASHA256)\nPrivateKey: AAAA\n";
    let rsa = load_text(d.path(), "Krsa", rsa_key, rsa_private, "example.net.");
    assert!(
        matches!(rsa, Err(KeyError::Unsupported { algorithm: 8, .. })),
        "{rsa:?}"
    );

    let other = "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: ODIyNjAzODQ2MjgwODAxMjI2NDUxOTAyMDQxNDIyNjI=\n";
    let mismatch = load_text(d.path(), "Kmismatch", RFC6605_KEY, other, "example.net.");
    assert!(
        mismatch
            .as_ref()
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("does not match"),
        "{mismatch:?}"
    );

    let missing = ZoneKey::load(&d.path().join("Knope"), &Name::root());
    assert!(
        matches!(&missing, Err(KeyError::Io { path, .. }) if path.ends_with("Knope.key")),
        "{missing:?}"
    );
    let garbage = load_text(
        d.path(),
        "Kgarbage",
        "hello world\n",
        RFC6605_PRIVATE,
        "example.net.",
    );
    assert!(
        matches!(garbage, Err(KeyError::Parse { .. })),
        "{garbage:?}"
    );
}

#[test]
fn timing_states() {
    let t = KeyTiming {
        created: None,
        publish: Some(100),
        activate: Some(200),
        retire: Some(300),
        remove: Some(400),
    };
    assert!(!t.is_published(99));
    assert!(t.is_published(100) && !t.is_active(100));
    assert!(t.is_active(200) && t.is_active(299));
    assert!(!t.is_active(300) && t.is_published(300));
    assert!(!t.is_published(400));
    assert_eq!(t.next_event(150), Some(200));
    assert_eq!(t.next_event(400), None);
    assert!(KeyTiming::default().is_active(0));
}

#[test]
fn key_tag_matches_rfc4034_example() {
    // RFC 4034 §5.4: DNSKEY 256 3 5 of dskey.example.com. has tag 60485.
    let rdata = BASE64
        .decode(
            b"AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut dnskey = vec![1, 0, 3, 5];
    dnskey.extend_from_slice(&rdata);
    assert_eq!(key_tag(&dnskey), 60485);
}
