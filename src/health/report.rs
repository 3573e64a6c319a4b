//! The probe report wire format and its authentication.
//!
//! Owns: [`ProbeReport`] (the JSON a prober POSTs), [`EndpointKey`] (how an endpoint is named on
//! the wire), the HMAC-SHA256 signature ([`sign`], [`verify`]), the key file ([`Keyring`]) and
//! the rejection reasons with their metric labels and HTTP status codes ([`RejectReason`]).
//!
//! Never: keeps state between reports (replay detection needs memory, so it lives in
//! `health::aggregate`), does I/O other than reading the key file, or parses a body whose
//! signature has not been checked.
//!
//! # Wire format
//!
//! The body is JSON (see [`ProbeReport`]); times are Unix milliseconds, durations milliseconds
//! (latency microseconds). Two headers carry the authentication:
//! [`KEY_ID_HEADER`] names the key, [`SIGNATURE_HEADER`] is the lowercase hex HMAC-SHA256 of the
//! raw body bytes under that key.
//!
//! # Key file
//!
//! One key per line, three whitespace-separated fields, `#` starts a comment:
//!
//! ```text
//! # key_id      prober_id   secret (hex, at least 16 bytes)
//! eu-1-2024a    eu-1        6f1c...64 hex digits...
//! eu-1-2024b    eu-1        a3b9...
//! ```
//!
//! A key id is unique in the file. A prober id may have at most [`MAX_KEYS_PER_PROBER`] keys,
//! which is what rotation needs: add the new key to every nameserver, then switch the prober, then
//! remove the old key. A prober signs with the *last* key listed for it. A report is accepted only
//! when its `prober_id` is the one bound to the key that signed it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

/// Header naming the key that signed the body.
pub const KEY_ID_HEADER: &str = "x-meridian-key-id";
/// Header carrying the lowercase hex HMAC-SHA256 of the raw body.
pub const SIGNATURE_HEADER: &str = "x-meridian-signature";
/// Largest accepted report body. An endpoint entry is 100-210 bytes (long names, IPv6, load,
/// weight, a failure reason), so this fits a prober of 10,000 endpoints (issue 16) with half
/// again to spare: it stops abuse, not real probers.
pub const MAX_REPORT_BYTES: usize = 4 * 1024 * 1024;
/// The report a POST carries: `body` as it came, or inflated when the request says
/// `Content-Encoding: gzip` (as probers send reports of [`crate::probe::push::GZIP_FROM_BYTES`]
/// and more). The signature covers the JSON, so it is checked on what this returns. Inflating
/// stops past [`MAX_REPORT_BYTES`]: a small body cannot make the nameserver hold more than a
/// plain one could.
pub fn decoded_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, RejectReason> {
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().map(str::trim));
    match encoding {
        None => Ok(std::borrow::Cow::Borrowed(body)),
        Some(Ok(e)) if e.eq_ignore_ascii_case("identity") => Ok(std::borrow::Cow::Borrowed(body)),
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") => {
            match inflate_report(flate2::read::GzDecoder::new(body)) {
                Ok(json) => Ok(std::borrow::Cow::Owned(json)),
                Err(Inflate::Broken) => Err(RejectReason::Malformed),
                Err(Inflate::TooLarge) => Err(RejectReason::Oversize),
            }
        }
        Some(_) => Err(RejectReason::Malformed),
    }
}

/// Why a compressed report could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inflate {
    /// The compressed data is broken or cut short.
    Broken,
    /// It inflates to more than [`MAX_REPORT_BYTES`].
    TooLarge,
}

/// Reads a report's JSON from `decoder` (gzip, over HTTP or from etcd), stopping
/// past [`MAX_REPORT_BYTES`]: no compressed body makes anyone hold more than a plain one may
/// be.
pub fn inflate_report(decoder: impl std::io::Read) -> Result<Vec<u8>, Inflate> {
    use std::io::Read;
    let limit = u64::try_from(MAX_REPORT_BYTES).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    decoder
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|_| Inflate::Broken)?;
    if out.len() > MAX_REPORT_BYTES {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}

/// How far a report's `sent_at_ms` may be from the receiver's clock, either way. Together with
/// the per-boot sequence check this bounds how long a captured report can be replayed. This is
/// the only use of `sent_at_ms`: which of a prober's reports is newer is decided by the
/// receiver from (boot, sequence) as received (`health::aggregate`), never by the prober's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Keys one prober may hold at once (the old and the new one during rotation).
pub const MAX_KEYS_PER_PROBER: usize = 2;
/// Shortest secret accepted in a key file, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// Shortest prober interval a report may declare.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest prober interval a report may declare; beyond this, "fresh" would mean hours.
pub const MAX_REPORT_INTERVAL: Duration = Duration::from_secs(3600);

/// Which endpoint a vote is about: `zone/service/address` on the wire.
///
/// The zone is stored lowercase and without a trailing dot so that `Shop.Example.` from one
/// config and `shop.example` from another name the same endpoint. Neither the zone nor the
/// service may be empty or contain `/`; the address is the endpoint's IP as the nameserver
/// answers it (IPv6 in its canonical compressed form, e.g. `shop.example/www/2001:db8::1`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointKey {
    zone: String,
    service: String,
    address: IpAddr,
}

/// Why a string or parts cannot form an [`EndpointKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointKeyError {
    /// The text is not `zone/service/address`.
    #[error("endpoint key `{0}`: expected zone/service/address")]
    Shape(String),
    /// Zone or service is empty or contains `/`.
    #[error("endpoint key: {part} `{value}` must be non-empty and contain no `/`")]
    Part {
        /// `zone` or `service`.
        part: &'static str,
        /// The offending value.
        value: String,
    },
    /// The address part is not an IP address.
    #[error("endpoint key `{0}`: address is not an IP address")]
    Address(String),
}

impl EndpointKey {
    /// Builds a key, normalising the zone (lowercase, no trailing dot).
    pub fn new(zone: &str, service: &str, address: IpAddr) -> Result<Self, EndpointKeyError> {
        let zone = zone.strip_suffix('.').unwrap_or(zone).to_ascii_lowercase();
        for (part, value) in [("zone", zone.as_str()), ("service", service)] {
            if value.is_empty() || value.contains('/') {
                return Err(EndpointKeyError::Part {
                    part,
                    value: value.to_owned(),
                });
            }
        }
        Ok(Self {
            zone,
            service: service.to_owned(),
            address,
        })
    }

    /// The zone, lowercase and without a trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The service name within the zone.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The endpoint's address.
    pub fn address(&self) -> IpAddr {
        self.address
    }
}

impl fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.zone, self.service, self.address)
    }
}

impl FromStr for EndpointKey {
    type Err = EndpointKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        let (Some(zone), Some(service), Some(address), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(EndpointKeyError::Shape(s.to_owned()));
        };
        let address = address
            .parse()
            .map_err(|_| EndpointKeyError::Address(s.to_owned()))?;
        Self::new(zone, service, address)
    }
}

impl TryFrom<String> for EndpointKey {
    type Error = EndpointKeyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<EndpointKey> for String {
    fn from(key: EndpointKey) -> Self {
        key.to_string()
    }
}

/// Identifies one prober; bound to its keys in the [`Keyring`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProberId(String);

impl ProberId {
    /// Wraps a prober id. Ids are compared exactly (case-sensitive).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A prober's view of one endpoint after applying rise/fall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteState {
    /// Passed `rise` consecutive checks.
    Up,
    /// Failed `fall` consecutive checks.
    Down,
    /// Not yet enough checks to say either; counts as no vote.
    Unknown,
}

impl VoteState {
    /// `up`, `down` or `unknown`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for VoteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One prober's full view, as POSTed to every nameserver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeReport {
    /// Who sent it; must match the prober bound to the signing key.
    pub prober_id: ProberId,
    /// The prober's region; votes are first counted per region.
    pub region: String,
    /// Random per process start; sequence numbers restart with it.
    pub boot_id: String,
    /// Increases by at least one per report within a boot; replays are rejected on it.
    pub sequence: u64,
    /// When the prober sent it, Unix milliseconds; only checked to be within
    /// [`MAX_CLOCK_SKEW`] of the receiver's clock, never used to order reports.
    pub sent_at_ms: u64,
    /// The prober's check interval in milliseconds; a vote is fresh for three of these.
    pub interval_ms: u64,
    /// Digest of the prober's configuration, so operators can spot probers on old configs.
    pub config_digest: String,
    /// The view of every endpoint the prober checks.
    pub endpoints: BTreeMap<EndpointKey, EndpointReport>,
}

/// One endpoint in a [`ProbeReport`].
///
/// `load` and `weight` came with application and exec checks; they are left out of the JSON
/// when the check did not produce them, so a prober whose checks report neither sends exactly
/// the format older nameservers accept (they deny unknown fields and would answer 400). Upgrade
/// nameservers before probers; a new nameserver accepts old probers' reports as they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointReport {
    /// The prober's rise/fall state.
    pub state: VoteState,
    /// Length of the current streak of identical check results (successes if the latest check
    /// passed, failures otherwise).
    pub consecutive: u32,
    /// Duration of the latest check in microseconds; absent before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// When the latest check finished, Unix milliseconds; absent before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at_ms: Option<u64>,
    /// Outcome of the latest check: `ok`, `connect refused`, `status 503`, `timeout`, `tls: ...`.
    pub reason: String,
    /// The endpoint's load, 0.0-1.0, from the latest check that reported one (`load_pointer`
    /// or an exec check's `load`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// A weight hint from the latest exec check (`weight` in its output), 0-1000: replaces
    /// the configured weight while fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl ProbeReport {
    /// The declared interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Serialises the report to the bytes that are signed and sent.
    pub fn to_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Milliseconds since the Unix epoch (0 for clocks set before 1970).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A signing key: its id, the prober it belongs to and the HMAC secret.
#[derive(Clone)]
pub struct Key {
    id: String,
    prober_id: ProberId,
    mac: ring::hmac::Key,
}

impl fmt::Debug for Key {
    // The secret never appears in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("prober_id", &self.prober_id)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Builds a key from its parts. The secret must be at least [`MIN_SECRET_BYTES`] long.
    pub fn new(id: &str, prober_id: ProberId, secret: &[u8]) -> Result<Self, KeyError> {
        if id.is_empty() || !id.bytes().all(is_id_byte) {
            return Err(KeyError::BadId(id.to_owned()));
        }
        if prober_id.as_str().is_empty() || !prober_id.as_str().bytes().all(is_id_byte) {
            return Err(KeyError::BadProberId(prober_id.0));
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        Ok(Self {
            id: id.to_owned(),
            prober_id,
            mac: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        })
    }

    /// The key id sent in [`KEY_ID_HEADER`].
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The prober this key authenticates.
    pub fn prober_id(&self) -> &ProberId {
        &self.prober_id
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Why a key cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Key ids are 1+ characters of `[A-Za-z0-9._-]`.
    #[error("key id `{0}`: use letters, digits, `.`, `_` and `-`")]
    BadId(String),
    /// Prober ids are 1+ characters of `[A-Za-z0-9._-]`.
    #[error("prober id `{0}`: use letters, digits, `.`, `_` and `-`")]
    BadProberId(String),
    /// The secret is too short to be a meaningful HMAC key.
    #[error("secret is {0} bytes, need at least {MIN_SECRET_BYTES}")]
    ShortSecret(usize),
}

/// Signs a body: lowercase hex HMAC-SHA256, the value of [`SIGNATURE_HEADER`].
pub fn sign(body: &[u8], key: &Key) -> String {
    data_encoding::HEXLOWER.encode(ring::hmac::sign(&key.mac, body).as_ref())
}

/// All keys a nameserver accepts (or a prober signs with), by key id.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    by_id: HashMap<String, Key>,
    /// Key ids per prober in file order; the last one signs.
    by_prober: HashMap<ProberId, Vec<String>>,
}

/// Why a key file cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// A line is not `key_id prober_id secret_hex`.
    #[error("{}:{line}: expected `key_id prober_id secret_hex`", path.display())]
    Shape {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The secret is not hex.
    #[error("{}:{line}: secret is not hex", path.display())]
    Hex {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The key itself is invalid.
    #[error("{}:{line}: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        source: KeyError,
    },
    /// The same key id appears twice.
    #[error("{}:{line}: key id `{id}` is already defined", path.display())]
    DuplicateId {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The repeated id.
        id: String,
    },
    /// A prober has more keys than rotation needs.
    #[error("{}:{line}: prober `{prober}` has more than {MAX_KEYS_PER_PROBER} keys", path.display())]
    TooManyKeys {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The prober.
        prober: ProberId,
    },
}

impl Keyring {
    /// Reads and parses a key file (format in the module docs).
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses key file text; `path` only names the origin in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, KeyringError> {
        let mut ring = Self::default();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [id, prober, secret_hex] = fields.as_slice() else {
                return Err(KeyringError::Shape {
                    path: path.to_owned(),
                    line,
                });
            };
            let secret = data_encoding::HEXLOWER_PERMISSIVE
                .decode(secret_hex.as_bytes())
                .map_err(|_| KeyringError::Hex {
                    path: path.to_owned(),
                    line,
                })?;
            let key = Key::new(id, ProberId::new(*prober), &secret).map_err(|source| {
                KeyringError::Key {
                    path: path.to_owned(),
                    line,
                    source,
                }
            })?;
            ring.insert(key).map_err(|e| match e {
                InsertError::Duplicate(id) => KeyringError::DuplicateId {
                    path: path.to_owned(),
                    line,
                    id,
                },
                InsertError::TooMany(prober) => KeyringError::TooManyKeys {
                    path: path.to_owned(),
                    line,
                    prober,
                },
            })?;
        }
        Ok(ring)
    }

    /// Builds a keyring from keys in order (for tests and programmatic setup).
    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> Result<Self, KeyringError> {
        let mut ring = Self::default();
        for (idx, key) in keys.into_iter().enumerate() {
            let path = PathBuf::from("<keys>");
            ring.insert(key).map_err(|e| match e {
                InsertError::Duplicate(id) => KeyringError::DuplicateId {
                    path,
                    line: idx + 1,
                    id,
                },
                InsertError::TooMany(prober) => KeyringError::TooManyKeys {
                    path,
                    line: idx + 1,
                    prober,
                },
            })?;
        }
        Ok(ring)
    }

    fn insert(&mut self, key: Key) -> Result<(), InsertError> {
        if self.by_id.contains_key(&key.id) {
            return Err(InsertError::Duplicate(key.id));
        }
        let ids = self.by_prober.entry(key.prober_id.clone()).or_default();
        if ids.len() >= MAX_KEYS_PER_PROBER {
            return Err(InsertError::TooMany(key.prober_id));
        }
        ids.push(key.id.clone());
        self.by_id.insert(key.id.clone(), key);
        Ok(())
    }

    /// The key with this id.
    pub fn get(&self, key_id: &str) -> Option<&Key> {
        self.by_id.get(key_id)
    }

    /// The key a prober signs with: the last one listed for it.
    pub fn signing_key(&self, prober: &ProberId) -> Option<&Key> {
        self.by_prober
            .get(prober)
            .and_then(|ids| ids.last())
            .and_then(|id| self.by_id.get(id))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no keys are loaded (every report will be rejected).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

enum InsertError {
    Duplicate(String),
    TooMany(ProberId),
}

/// Why a report was rejected. Rejection never changes any health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RejectReason {
    /// Body larger than [`MAX_REPORT_BYTES`].
    #[error("report body exceeds {MAX_REPORT_BYTES} bytes")]
    Oversize,
    /// Key id header missing or not in the keyring.
    #[error("unknown or missing key id")]
    UnknownKey,
    /// Signature header missing, not hex, or not matching the body.
    #[error("signature does not match the body")]
    BadSignature,
    /// Signed, but not a valid report; or a body in a content encoding other than gzip, or
    /// gzip that does not inflate.
    #[error("report is not valid")]
    Malformed,
    /// The report's prober id is not the one the key belongs to.
    #[error("report prober id does not match the signing key")]
    ProberMismatch,
    /// `sent_at_ms` is more than [`MAX_CLOCK_SKEW`] away from the receiver's clock.
    #[error("report sent_at is more than {}s off", MAX_CLOCK_SKEW.as_secs())]
    StaleTime,
    /// Sequence number not newer than the last accepted one for this prober and boot.
    #[error("report sequence is not newer than the last accepted one")]
    Replay,
}

impl RejectReason {
    /// Every reason, for registering metric labels up front.
    pub const ALL: [Self; 7] = [
        Self::Oversize,
        Self::UnknownKey,
        Self::BadSignature,
        Self::Malformed,
        Self::ProberMismatch,
        Self::StaleTime,
        Self::Replay,
    ];

    /// Stable metric label (`reason="..."`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Malformed => "malformed",
            Self::ProberMismatch => "prober_mismatch",
            Self::StaleTime => "stale_time",
            Self::Replay => "replay",
        }
    }

    /// The HTTP status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Oversize => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownKey | Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::ProberMismatch => StatusCode::FORBIDDEN,
            Self::Malformed | Self::StaleTime => StatusCode::BAD_REQUEST,
            Self::Replay => StatusCode::CONFLICT,
        }
    }
}

/// Authenticates and parses a report body.
///
/// Order matters: size first (cheap), then the signature over the raw bytes, and only then is
/// the JSON parsed, so unauthenticated input never reaches the parser. Replay is checked later
/// by `HealthBook::ingest`, which remembers sequence numbers.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keyring: &Keyring,
    now: SystemTime,
) -> Result<ProbeReport, RejectReason> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(RejectReason::Oversize);
    }
    let key = headers
        .get(KEY_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|id| keyring.get(id.trim()))
        .ok_or(RejectReason::UnknownKey)?;
    let tag = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| data_encoding::HEXLOWER_PERMISSIVE.decode(v.as_bytes()).ok())
        .ok_or(RejectReason::BadSignature)?;
    // ring::hmac::verify compares in constant time.
    ring::hmac::verify(&key.mac, body, &tag).map_err(|_| RejectReason::BadSignature)?;

    let report: ProbeReport = serde_json::from_slice(body).map_err(|_| RejectReason::Malformed)?;
    let interval = report.interval();
    if report.region.is_empty()
        || report.boot_id.is_empty()
        || !(MIN_REPORT_INTERVAL..=MAX_REPORT_INTERVAL).contains(&interval)
    {
        return Err(RejectReason::Malformed);
    }
    if report.prober_id != key.prober_id {
        return Err(RejectReason::ProberMismatch);
    }
    let now_ms = unix_ms(now);
    let skew_ms = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    if now_ms.abs_diff(report.sent_at_ms) > skew_ms {
        return Err(RejectReason::StaleTime);
    }
    Ok(report)
}

#[cfg(test)]
/// A report of `prober` with `n` endpoints as a prober of many services sends it, for tests:
/// distinct services and addresses, check latencies and times that differ per endpoint.
pub(crate) fn many_endpoints(prober: &str, sequence: u64, n: u32) -> ProbeReport {
    let endpoints = (0..n)
        .map(|i| {
            let address = std::net::IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let key = EndpointKey::new(
                "gslb.example-company.com.",
                &format!("service-{:04}", i / 100),
                address,
            )
            .unwrap();
            let report = EndpointReport {
                state: if i % 7 == 0 {
                    VoteState::Down
                } else {
                    VoteState::Up
                },
                consecutive: 3 + i % 500,
                latency_us: Some(200 + u64::from(i * 7919 % 50_000)),
                checked_at_ms: Some(1_796_174_100_000 + u64::from(i * 104_729 % 1000)),
                reason: if i % 7 == 0 {
                    "connect refused".into()
                } else {
                    "ok".into()
                },
                load: (i % 3 == 0).then(|| f64::from(i % 100) / 100.0),
                weight: None,
            };
            (key, report)
        })
        .collect();
    ProbeReport {
        prober_id: ProberId::new(prober),
        region: "eu-west".into(),
        boot_id: "6f1c2a9e4b7d3f08".into(),
        sequence,
        sent_at_ms: unix_ms(SystemTime::now()),
        interval_ms: 1000,
        config_digest: "9a0b1c2d3e4f5061".into(),
        endpoints,
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "report_prop.rs"]
mod proptests;
