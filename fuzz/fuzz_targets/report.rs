//! Probe report bodies and key files: `Keyring::parse` on the bytes as text, then the bytes
//! as a signed report through `HealthHub::accept_signed` (signature, JSON, validation, replay,
//! ingest) and a health decision. A body that parses as a report is also re-sent with a fresh
//! timestamp and a new signature, so the fuzzer reaches ingest and the vote logic.

#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use meridian::health::hub::HealthHub;
use meridian::health::report::{
    KEY_ID_HEADER, Key, Keyring, ProbeReport, ProberId, SIGNATURE_HEADER, sign, unix_ms,
};
use meridian::metrics::Metrics;

const SECRET: [u8; 32] = [7; 32];

fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| {
        Key::new("k1", ProberId::new("p1"), &SECRET).unwrap_or_else(|e| panic!("key: {e}"))
    })
}

fn hub() -> &'static HealthHub {
    static HUB: OnceLock<HealthHub> = OnceLock::new();
    HUB.get_or_init(|| {
        let known = [
            "example.test/www/192.0.2.10",
            "example.test/www/2001:db8::1",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        let keyring = Keyring::from_keys([key().clone()]).unwrap_or_else(|e| panic!("{e}"));
        HealthHub::new(
            known,
            Duration::from_secs(300),
            Some(keyring),
            Arc::new(Metrics::new()),
        )
    })
}

fn signed(body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(KEY_ID_HEADER, HeaderValue::from_static("k1"));
    if let Ok(v) = HeaderValue::from_str(&sign(body, key())) {
        h.insert(SIGNATURE_HEADER, v);
    }
    h
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Keyring::parse(text, Path::new("fuzz-keys"));
    }
    let hub = hub();
    let _ = hub.accept_signed(&signed(data), data);
    if let Ok(mut report) = serde_json::from_slice::<ProbeReport>(data) {
        report.sent_at_ms = unix_ms(SystemTime::now());
        if let Ok(body) = report.to_body() {
            let _ = hub.accept_signed(&signed(&body), &body);
        }
    }
    hub.decide();
    let _ = hub.snapshot();
});
