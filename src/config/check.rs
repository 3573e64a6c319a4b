//! Validating `[check.NAME]` tables into check specifications ([`CheckSpec`]): what a prober
//! checks is configuration, so its shape lives here and `probe::check` runs it.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{CheckFile, DurationFile, JsonValueFile, StatusFile};

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
        "exec" => CheckKind::Exec,
        other => {
            return Err(err(
                "type",
                format!("`{}` is not http, https, tcp or exec", super::clip(other)),
            ));
        }
    };
    let port = match (file.port, kind) {
        (Some(0), _) => return Err(err("port", "0 is not a port".into())),
        (Some(p), _) => p,
        (None, CheckKind::Http) => 80,
        (None, CheckKind::Https) => 443,
        (None, CheckKind::Tcp) => return Err(err("port", "a tcp check needs a port".into())),
        (None, CheckKind::Exec) => 0,
    };
    let mut spec = CheckSpec::new(kind, port);
    let http = matches!(kind, CheckKind::Http | CheckKind::Https);
    match (&file.command, kind) {
        (Some(command), CheckKind::Exec) => {
            let Some(program) = command.first() else {
                return Err(err("command", "names no program".into()));
            };
            if !Path::new(program).is_absolute() {
                return Err(err(
                    "command",
                    format!(
                        "`{}` must be an absolute path (no shell, no PATH search)",
                        super::clip(program)
                    ),
                ));
            }
            spec.command = command.clone();
        }
        (None, CheckKind::Exec) => {
            return Err(err("command", "an exec check needs a command".into()));
        }
        (Some(_), _) => return Err(err("command", "only exec checks run a command".into())),
        (None, _) => {}
    }
    for (key, given) in [
        ("path", file.path.is_some()),
        ("expect_status", file.expect_status.is_some()),
        ("expect_body", file.expect_body.is_some()),
        ("expect_json", !file.expect_json.is_empty()),
        ("load_pointer", file.load_pointer.is_some()),
        ("max_latency", file.max_latency.is_some()),
    ] {
        if given && !http {
            return Err(err(key, "only http and https checks have it".into()));
        }
    }
    for (pointer, value) in &file.expect_json {
        let key = format!("expect_json.\"{}\"", super::clip(pointer));
        json_pointer(pointer).map_err(|m| err(&key, m))?;
        let value = match value {
            JsonValueFile::Bool(b) => Expected::Bool(*b),
            #[allow(clippy::cast_precision_loss)]
            JsonValueFile::Int(i) => Expected::Number(*i as f64),
            JsonValueFile::Float(f) => Expected::Number(*f),
            JsonValueFile::Text(t) => Expected::Text(t.clone()),
        };
        spec.expect_json.push((pointer.clone(), value));
    }
    if let Some(pointer) = &file.load_pointer {
        json_pointer(pointer).map_err(|m| err("load_pointer", m))?;
        spec.load_pointer = Some(pointer.clone());
    }
    if let Some(d) = &file.max_latency {
        let d = duration(d).map_err(|m| err("max_latency", m))?;
        if d.is_zero() {
            return Err(err("max_latency", "must be above 0".into()));
        }
        spec.max_latency = Some(d);
    }
    let shed = Shed {
        above: file.shed_above.unwrap_or(DEFAULT_SHED_ABOVE),
        at: file.shed_at.unwrap_or(DEFAULT_SHED_AT),
    };
    for (key, v) in [("shed_above", shed.above), ("shed_at", shed.at)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(err(key, format!("{v} is not between 0.0 and 1.0")));
        }
    }
    if shed.at <= shed.above {
        return Err(err(
            "shed_at",
            format!("{} must be above shed_above ({})", shed.at, shed.above),
        ));
    }
    spec.shed = shed;
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
    if spec.max_latency.is_some_and(|m| m >= spec.timeout) {
        return Err(err(
            "max_latency",
            format!(
                "{:?} must be below the timeout ({:?})",
                spec.max_latency.unwrap_or_default(),
                spec.timeout
            ),
        ));
    }
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

/// Checks the syntax of an RFC 6901 JSON pointer: empty (the whole document) or `/`-separated
/// tokens where `~` is only followed by `0` or `1`.
pub fn json_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "`{}` is not a JSON pointer (RFC 6901): it must start with `/`",
            super::clip(pointer)
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "`{}`: `~` must be followed by 0 or 1 (RFC 6901)",
                super::clip(pointer)
            ));
        }
    }
    Ok(())
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

/// Default load above which an endpoint's weight starts falling (`shed_above`).
pub const DEFAULT_SHED_ABOVE: f64 = 0.8;
/// Default load at which an endpoint's weight reaches zero (`shed_at`).
pub const DEFAULT_SHED_AT: f64 = 0.95;

/// Load shedding thresholds: the weight is full up to `above`, falls linearly to zero at `at`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shed {
    /// Load where shedding starts.
    pub above: f64,
    /// Load where the weight is zero.
    pub at: f64,
}

impl Default for Shed {
    fn default() -> Self {
        Self {
            above: DEFAULT_SHED_ABOVE,
            at: DEFAULT_SHED_AT,
        }
    }
}

impl Shed {
    /// The share of its weight an endpoint at `load` keeps: 1.0 up to `above`, falling
    /// linearly to 0.0 at `at` and beyond. A load that is not a number keeps the full weight.
    pub fn factor(self, load: f64) -> f64 {
        if load.is_nan() || load <= self.above {
            1.0
        } else if load >= self.at {
            0.0
        } else {
            (self.at - load) / (self.at - self.above)
        }
    }
}

/// An `expect_json` value.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// A JSON string.
    Text(String),
    /// A JSON number (integers and floats compare by value: `1` matches `1.0`).
    Number(f64),
    /// A JSON boolean.
    Bool(bool),
}

impl Expected {
    /// True when `value` is this.
    pub fn matches(&self, value: &serde_json::Value) -> bool {
        match (self, value) {
            (Self::Text(want), serde_json::Value::String(got)) => want == got,
            (Self::Number(want), serde_json::Value::Number(got)) => {
                got.as_f64().is_some_and(|g| g == *want)
            }
            (Self::Bool(want), serde_json::Value::Bool(got)) => want == got,
            _ => false,
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => write!(f, "{t:?}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The protocol of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// GET over plain HTTP/1.1.
    Http,
    /// GET over HTTP/1.1 in TLS.
    Https,
    /// A TCP connect, closed at once.
    Tcp,
    /// A program run with arguments (no shell); exit 0 is up.
    Exec,
}

/// What to check on every endpoint of a service; built from a zone's `[check.NAME]`.
#[derive(Clone, Debug, PartialEq)]
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
    /// JSON pointer -> value the body must have there (HTTP only).
    pub expect_json: Vec<(String, Expected)>,
    /// A response slower than this fails (HTTP only).
    pub max_latency: Option<Duration>,
    /// JSON pointer to a 0.0-1.0 load figure in the body (HTTP only).
    pub load_pointer: Option<String>,
    /// When the reported load sheds weight (applied by the nameserver).
    pub shed: Shed,
    /// exec only: program (absolute path) and arguments; `{address}` and `{port}` in an
    /// argument are replaced by the endpoint's probe address and port.
    pub command: Vec<String>,
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
            expect_json: Vec::new(),
            max_latency: None,
            load_pointer: None,
            shed: Shed::default(),
            command: Vec::new(),
        }
    }

    /// True when the check needs the response body as JSON.
    pub fn wants_json(&self) -> bool {
        !self.expect_json.is_empty() || self.load_pointer.is_some()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Check, (String, String)> {
        let file: CheckFile = toml::from_str(text).unwrap();
        check("app", &file, Path::new("/zones"))
    }

    #[test]
    fn application_and_exec_keys() {
        let c = parse(
            r#"type = "http"
expect_json = { "/status" = "healthy", "/db/ok" = true, "/replicas" = 3, "/ratio" = 0.5 }
max_latency = "500ms"
load_pointer = "/load"
shed_above = 0.7
timeout = "1s"
"#,
        )
        .unwrap();
        let s = &c.spec;
        assert_eq!(
            s.expect_json,
            vec![
                ("/db/ok".to_owned(), Expected::Bool(true)),
                ("/ratio".to_owned(), Expected::Number(0.5)),
                ("/replicas".to_owned(), Expected::Number(3.0)),
                ("/status".to_owned(), Expected::Text("healthy".into())),
            ]
        );
        assert_eq!(s.max_latency, Some(Duration::from_millis(500)));
        assert_eq!(s.load_pointer.as_deref(), Some("/load"));
        assert_eq!((s.shed.above, s.shed.at), (0.7, DEFAULT_SHED_AT));
        let e = parse("type = \"exec\"\ncommand = [\"/opt/checks/db\", \"{address}\"]\n").unwrap();
        assert_eq!(e.spec.kind, CheckKind::Exec);
        assert_eq!(e.spec.command, ["/opt/checks/db", "{address}"]);
        assert_eq!(e.spec.shed, Shed::default());
    }

    #[test]
    fn bad_application_and_exec_keys() {
        let cases = [
            (
                "type = \"http\"\nexpect_json = { \"status\" = \"ok\" }",
                "check.app.expect_json.\"status\"",
                "`status` is not a JSON pointer (RFC 6901): it must start with `/`",
            ),
            (
                "type = \"http\"\nload_pointer = \"/a~2\"",
                "check.app.load_pointer",
                "`/a~2`: `~` must be followed by 0 or 1 (RFC 6901)",
            ),
            (
                "type = \"http\"\nmax_latency = \"3s\"",
                "check.app.max_latency",
                "3s must be below the timeout (2s)",
            ),
            (
                "type = \"http\"\nshed_above = 0.9\nshed_at = 0.9",
                "check.app.shed_at",
                "0.9 must be above shed_above (0.9)",
            ),
            (
                "type = \"http\"\nshed_at = 1.5",
                "check.app.shed_at",
                "1.5 is not between 0.0 and 1.0",
            ),
            (
                "type = \"tcp\"\nport = 5432\nexpect_json = { \"/a\" = 1 }",
                "check.app.expect_json",
                "only http and https checks have it",
            ),
            (
                "type = \"exec\"",
                "check.app.command",
                "an exec check needs a command",
            ),
            (
                "type = \"exec\"\ncommand = [\"check-db\"]",
                "check.app.command",
                "`check-db` must be an absolute path (no shell, no PATH search)",
            ),
            (
                "type = \"exec\"\ncommand = []",
                "check.app.command",
                "names no program",
            ),
            (
                "type = \"http\"\ncommand = [\"/bin/true\"]",
                "check.app.command",
                "only exec checks run a command",
            ),
        ];
        for (text, key, message) in cases {
            let (k, m) = parse(text).unwrap_err();
            assert_eq!((k.as_str(), m.as_str()), (key, message), "{text}");
        }
    }

    #[test]
    fn expected_values_compare_by_type_and_value() {
        use serde_json::json;
        let cases = [
            (Expected::Text("a".into()), json!("a"), true),
            (Expected::Text("1".into()), json!(1), false),
            (Expected::Number(1.0), json!(1), true),
            (Expected::Number(1.0), json!(1.0), true),
            (Expected::Number(1.5), json!(1), false),
            (Expected::Bool(true), json!(true), true),
            (Expected::Bool(true), json!("true"), false),
            (Expected::Bool(false), json!(null), false),
        ];
        for (want, got, ok) in cases {
            assert_eq!(want.matches(&got), ok, "{want} vs {got}");
        }
    }
}
