//! Validating `[check.NAME]` tables into check specifications ([`CheckSpec`]): what a prober
//! checks is configuration, so its shape lives here and `probe::check` runs it.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{CheckFile, DurationFile, StatusFile};

/// Default time between checks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest time between checks.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default time one check may take.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A validated health check.
#[derive(Clone, Debug)]
pub struct Check {
    /// Its name in the zone file.
    pub name: String,
    /// What to do against an endpoint.
    pub spec: CheckSpec,
    /// Time between checks of one endpoint.
    pub interval: Duration,
    /// Consecutive successes to go up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
}

/// Validates one check; errors are `(key suffix, message)` for the loader to wrap.
pub fn check(name: &str, file: &CheckFile, base: &Path) -> Result<Check, (String, String)> {
    let err = |key: &str, msg: String| (format!("check.{name}.{key}"), msg);
    let kind = match file.kind.as_str() {
        "http" => CheckKind::Http,
        "https" => CheckKind::Https,
        "tcp" => CheckKind::Tcp,
        other => {
            return Err(err(
                "type",
                format!("`{}` is not http, https or tcp", super::clip(other)),
            ));
        }
    };
    let port = match (file.port, kind) {
        (Some(0), _) => return Err(err("port", "0 is not a port".into())),
        (Some(p), _) => p,
        (None, CheckKind::Http) => 80,
        (None, CheckKind::Https) => 443,
        (None, CheckKind::Tcp) => return Err(err("port", "a tcp check needs a port".into())),
    };
    let mut spec = CheckSpec::new(kind, port);
    if let Some(path) = &file.path {
        if !path.starts_with('/') {
            return Err(err(
                "path",
                format!("`{}` must start with `/`", super::clip(path)),
            ));
        }
        spec.path = path.clone();
    }
    spec.host = file.host.clone();
    if let Some(list) = &file.expect_status {
        for (i, s) in list.iter().enumerate() {
            let range = match s {
                StatusFile::Code(c) => *c..=*c,
                StatusFile::Range(text) => {
                    let parsed = text.split_once('-').and_then(|(a, b)| {
                        Some(a.trim().parse::<u16>().ok()?..=b.trim().parse::<u16>().ok()?)
                    });
                    match parsed {
                        Some(r) if r.start() <= r.end() => r,
                        _ => {
                            return Err(err(
                                &format!("expect_status[{i}]"),
                                format!(
                                    "`{}` is not a status or a range like \"200-299\"",
                                    super::clip(text)
                                ),
                            ));
                        }
                    }
                }
            };
            if *range.start() < 100 || *range.end() > 599 {
                return Err(err(
                    &format!("expect_status[{i}]"),
                    "statuses are between 100 and 599".into(),
                ));
            }
            spec.expect_status.push(range);
        }
    }
    spec.expect_body = file.expect_body.clone();
    spec.headers = file
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if spec
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("host"))
    {
        return Err(err("headers", "set the Host header with `host`".into()));
    }
    spec.tls_verify = file.tls_verify.unwrap_or(true);
    spec.ca_file = file.ca_file.as_ref().map(|f| base.join(f));
    let interval = match &file.interval {
        None => DEFAULT_INTERVAL,
        Some(d) => duration(d).map_err(|m| err("interval", m))?,
    };
    if interval < MIN_INTERVAL {
        return Err(err(
            "interval",
            format!("{interval:?} is below the minimum of 1s"),
        ));
    }
    spec.timeout = match &file.timeout {
        None => DEFAULT_CHECK_TIMEOUT.min(interval.saturating_sub(Duration::from_millis(100))),
        Some(d) => duration(d).map_err(|m| err("timeout", m))?,
    };
    if spec.timeout >= interval || spec.timeout.is_zero() {
        return Err(err(
            "timeout",
            format!(
                "{:?} must be above 0 and below the interval ({interval:?})",
                spec.timeout
            ),
        ));
    }
    let rise = file.rise.unwrap_or(DEFAULT_RISE);
    let fall = file.fall.unwrap_or(DEFAULT_FALL);
    for (key, v) in [("rise", rise), ("fall", fall)] {
        if !(1..=100).contains(&v) {
            return Err(err(key, format!("{v} is not between 1 and 100")));
        }
    }
    Ok(Check {
        name: name.to_string(),
        spec,
        interval,
        rise,
        fall,
    })
}

/// `5`, `"5s"`, `"500ms"`, `"1m"`.
pub fn duration(d: &DurationFile) -> Result<Duration, String> {
    match d {
        DurationFile::Seconds(s) => Ok(Duration::from_secs(*s)),
        DurationFile::Text(t) => {
            let t = t.trim();
            let (num, unit) = t
                .find(|c: char| !c.is_ascii_digit())
                .map_or((t, "s"), |i| t.split_at(i));
            let n: u64 = num.parse().map_err(|_| {
                format!(
                    "`{}` is not a duration like \"5s\" or \"500ms\"",
                    super::clip(t)
                )
            })?;
            match unit {
                "ms" => Ok(Duration::from_millis(n)),
                "s" => Ok(Duration::from_secs(n)),
                "m" => Ok(Duration::from_secs(n * 60)),
                _ => Err(format!("`{}`: unit must be ms, s or m", super::clip(t))),
            }
        }
    }
}

/// Default consecutive successes needed to go up.
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failures needed to go down.
pub const DEFAULT_FALL: u32 = 3;

/// Default check timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default accepted statuses: success and redirects (redirects are not followed).
pub const DEFAULT_EXPECT_STATUS: RangeInclusive<u16> = 200..=399;
/// How much of a response body `expect_body` searches.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The protocol of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// GET over plain HTTP/1.1.
    Http,
    /// GET over HTTP/1.1 in TLS.
    Https,
    /// A TCP connect, closed at once.
    Tcp,
}

/// What to check on every endpoint of a service; built from a zone's `[check.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    /// Protocol.
    pub kind: CheckKind,
    /// Port on the endpoint.
    pub port: u16,
    /// Request path, starting with `/`.
    pub path: String,
    /// Host header and TLS server name; the endpoint's IP when `None`.
    pub host: Option<String>,
    /// Statuses that pass; [`DEFAULT_EXPECT_STATUS`] when empty.
    pub expect_status: Vec<RangeInclusive<u16>>,
    /// A substring the first [`MAX_BODY_BYTES`] of the body must contain.
    pub expect_body: Option<String>,
    /// Extra request headers (not `Host`: use `host`).
    pub headers: Vec<(String, String)>,
    /// Check the server certificate (HTTPS only).
    pub tls_verify: bool,
    /// PEM file with the CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Limit for the whole check: connect, TLS, request and body.
    pub timeout: Duration,
}

impl CheckSpec {
    /// A check with every optional setting at its default: path `/`, statuses 200-399,
    /// certificate verification on, [`DEFAULT_TIMEOUT`].
    pub fn new(kind: CheckKind, port: u16) -> Self {
        Self {
            kind,
            port,
            path: "/".to_owned(),
            host: None,
            expect_status: Vec::new(),
            expect_body: None,
            headers: Vec::new(),
            tls_verify: true,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// True when `status` passes (`expect_status`, or [`DEFAULT_EXPECT_STATUS`] when empty).
    pub fn status_ok(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            DEFAULT_EXPECT_STATUS.contains(&status)
        } else {
            self.expect_status.iter().any(|r| r.contains(&status))
        }
    }
}
