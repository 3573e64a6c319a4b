//! One health check of one endpoint: HTTP, HTTPS or a TCP connect.
//!
//! Owns: [`CheckSpec`] (what to check, already validated by config loading), [`Checker`] (the
//! prepared check: TLS settings, CA file and HTTP clients built once) and [`CheckOutcome`] with
//! its short [`CheckReason`] (`connect refused`, `status 503`, `timeout`, `tls: unknown issuer`).
//!
//! Never: applies rise/fall (that is `probe::state`), schedules or retries, follows redirects,
//! reuses a connection between checks (a pooled connection would hide a backend that no longer
//! accepts new ones), or reads more than [`MAX_BODY_BYTES`] of a response.
//!
//! TLS is rustls with the ring provider. With `tls_verify` the certificate is checked against
//! the system roots, or only against `ca_file` when one is given; the name checked (and sent as
//! SNI) is `host` when set, otherwise the endpoint's IP address.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Default check timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default accepted statuses: success and redirects (redirects are not followed).
pub const DEFAULT_EXPECT_STATUS: RangeInclusive<u16> = 200..=399;
/// How much of a response body `expect_body` searches.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest reason text kept from a TLS or HTTP error, so reports stay small.
const MAX_REASON_CHARS: usize = 80;

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

    fn status_ok(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            DEFAULT_EXPECT_STATUS.contains(&status)
        } else {
            self.expect_status.iter().any(|r| r.contains(&status))
        }
    }
}

/// Why a check passed or failed, in the short form reports carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckReason {
    /// Passed.
    Ok,
    /// The connection was refused (`connect refused`).
    ConnectRefused,
    /// Another connect error (`connect: network unreachable`).
    Connect(String),
    /// The check did not finish within its timeout (`timeout`).
    Timeout,
    /// A status outside `expect_status` (`status 503`).
    Status(u16),
    /// `expect_body` not found in the first [`MAX_BODY_BYTES`] (`body mismatch`).
    BodyMismatch,
    /// The TLS handshake failed (`tls: unknown issuer`).
    Tls(String),
    /// The HTTP exchange failed after connecting (`http: connection closed`).
    Http(String),
}

impl fmt::Display for CheckReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::ConnectRefused => f.write_str("connect refused"),
            Self::Connect(s) => write!(f, "connect: {s}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Status(code) => write!(f, "status {code}"),
            Self::BodyMismatch => f.write_str("body mismatch"),
            Self::Tls(s) => write!(f, "tls: {s}"),
            Self::Http(s) => write!(f, "http: {s}"),
        }
    }
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether the check passed.
    pub ok: bool,
    /// Time from start to verdict (the timeout, when it timed out).
    pub latency: Duration,
    /// Why.
    pub reason: CheckReason,
}

/// Why a [`Checker`] cannot be built from a spec.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The CA file cannot be read or parsed.
    #[error("{}: {source}", path.display())]
    CaFile {
        /// The CA file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("{}: no usable CA certificate", path.display())]
    CaFileEmpty {
        /// The CA file.
        path: PathBuf,
    },
    /// A header name or value is not valid HTTP.
    #[error("header `{0}`: not a valid HTTP header")]
    Header(String),
    /// `Host` given as a header.
    #[error("header `Host`: set `host` instead, it also sets the TLS server name")]
    HostHeader,
    /// `host` is not a valid DNS name or IP address.
    #[error("host `{0}`: not a valid host name")]
    Host(String),
    /// `path` does not start with `/`.
    #[error("path `{0}`: must start with `/`")]
    Path(String),
    /// The TLS verifier cannot be set up.
    #[error("tls setup: {0}")]
    Tls(String),
    /// The HTTP client cannot be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A prepared check: run [`Checker::check`] against any number of endpoints, concurrently.
#[derive(Debug)]
pub struct Checker {
    spec: CheckSpec,
    tls: Arc<rustls::ClientConfig>,
    headers: HeaderMap,
    /// `host` when it is a DNS name: requests go to it, resolved to the endpoint per client.
    dns_host: Option<String>,
    /// HTTP clients by endpoint, built on first use. With a DNS `host`, each endpoint needs
    /// its own resolver override, hence its own client; otherwise one client serves all.
    clients: Mutex<HashMap<Option<IpAddr>, reqwest::Client>>,
}

impl Checker {
    /// Validates the spec, loads the CA file and builds the TLS configuration.
    pub fn new(spec: CheckSpec) -> Result<Self, CheckError> {
        if !spec.path.starts_with('/') {
            return Err(CheckError::Path(spec.path));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| CheckError::Header(name.clone()))?;
            if n == reqwest::header::HOST {
                return Err(CheckError::HostHeader);
            }
            let v = HeaderValue::from_str(value).map_err(|_| CheckError::Header(name.clone()))?;
            headers.append(n, v);
        }
        let dns_host = match &spec.host {
            None => None,
            Some(h) => match ServerName::try_from(h.as_str()) {
                Ok(ServerName::DnsName(_)) => Some(h.clone()),
                Ok(_) => {
                    // An IP as `host`: only the Host header changes; the URL uses the endpoint.
                    let v = HeaderValue::from_str(h).map_err(|_| CheckError::Host(h.clone()))?;
                    headers.insert(reqwest::header::HOST, v);
                    None
                }
                Err(_) => return Err(CheckError::Host(h.clone())),
            },
        };
        let tls = Arc::new(tls_config(&spec)?);
        Ok(Self {
            spec,
            tls,
            headers,
            dns_host,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The spec this checker runs.
    pub fn spec(&self) -> &CheckSpec {
        &self.spec
    }

    /// Checks one endpoint on the spec's port. Never fails: every problem is a reason.
    pub async fn check(&self, ip: IpAddr) -> CheckOutcome {
        let start = Instant::now();
        let reason = match tokio::time::timeout(self.spec.timeout, self.run(ip)).await {
            Ok(reason) => reason,
            Err(_) => CheckReason::Timeout,
        };
        CheckOutcome {
            ok: reason == CheckReason::Ok,
            latency: start.elapsed(),
            reason,
        }
    }

    async fn run(&self, ip: IpAddr) -> CheckReason {
        let target = SocketAddr::new(ip, self.spec.port);
        match self.spec.kind {
            CheckKind::Tcp => match tokio::net::TcpStream::connect(target).await {
                Ok(_) => CheckReason::Ok,
                Err(e) => from_connect_io(&e),
            },
            CheckKind::Http | CheckKind::Https => self.run_http(target).await,
        }
    }

    async fn run_http(&self, target: SocketAddr) -> CheckReason {
        let client = match self.client_for(target) {
            Ok(c) => c,
            Err(e) => return CheckReason::Http(shorten(&e.to_string())),
        };
        let scheme = match self.spec.kind {
            CheckKind::Https => "https",
            _ => "http",
        };
        let authority = match &self.dns_host {
            Some(host) => format!("{host}:{}", target.port()),
            None => target.to_string(),
        };
        let url = format!("{scheme}://{authority}{}", self.spec.path);
        let mut response = match client.get(&url).send().await {
            Ok(r) => r,
            Err(e) => return from_reqwest(&e),
        };
        let status = response.status().as_u16();
        if !self.spec.status_ok(status) {
            return CheckReason::Status(status);
        }
        let Some(needle) = &self.spec.expect_body else {
            return CheckReason::Ok;
        };
        let needle = needle.as_bytes();
        let mut body = Vec::new();
        while body.len() < MAX_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return from_reqwest(&e),
            }
        }
        body.truncate(MAX_BODY_BYTES);
        if needle.is_empty() || body.windows(needle.len()).any(|w| w == needle) {
            CheckReason::Ok
        } else {
            CheckReason::BodyMismatch
        }
    }

    fn client_for(&self, target: SocketAddr) -> Result<reqwest::Client, CheckError> {
        let slot = self.dns_host.as_ref().map(|_| target.ip());
        // The lock is never held across an await; poisoning only means another check
        // panicked mid-insert, and the map is still usable.
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&slot) {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls).clone())
            .default_headers(self.headers.clone())
            .user_agent(concat!("meridian-probe/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .connect_timeout(self.spec.timeout)
            .timeout(self.spec.timeout);
        if let Some(host) = &self.dns_host {
            builder = builder.resolve(host, target);
        }
        let client = builder.build()?;
        clients.insert(slot, client.clone());
        Ok(client)
    }
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration of a check (also used by `probe::push`).
pub(crate) fn tls_config(spec: &CheckSpec) -> Result<rustls::ClientConfig, CheckError> {
    let provider = ring_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CheckError::Tls(e.to_string()))?
        .dangerous();
    let verifier: Arc<dyn ServerCertVerifier> = if !spec.tls_verify {
        Arc::new(AcceptAnyCert(provider.signature_verification_algorithms))
    } else if let Some(path) = &spec.ca_file {
        let roots = load_roots(path)?;
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| CheckError::Tls(e.to_string()))?
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| CheckError::Tls(e.to_string()))?,
        )
    };
    let mut config = builder
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, CheckError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|source| CheckError::CaFile {
        path: path.to_owned(),
        source,
    })?;
    for cert in certs {
        let cert = cert.map_err(|source| CheckError::CaFile {
            path: path.to_owned(),
            source,
        })?;
        // A certificate webpki cannot use as a trust anchor is skipped, like the system store does.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(CheckError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// `tls_verify = false`: any certificate for any name, but the handshake signatures are
/// still checked so the session is at least with the holder of the presented key.
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn from_connect_io(e: &io::Error) -> CheckReason {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => CheckReason::ConnectRefused,
        io::ErrorKind::TimedOut => CheckReason::Timeout,
        kind => CheckReason::Connect(kind.to_string()),
    }
}

/// Finds the most specific cause in a reqwest error chain.
fn from_reqwest(e: &reqwest::Error) -> CheckReason {
    if e.is_timeout() {
        return CheckReason::Timeout;
    }
    let mut io_kind = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = find_tls(err, &mut io_kind) {
            return CheckReason::Tls(tls_short(tls));
        }
        cur = err.source();
    }
    match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => CheckReason::ConnectRefused,
        Some(io::ErrorKind::TimedOut) => CheckReason::Timeout,
        _ if e.is_connect() => CheckReason::Connect(shorten(&root_message(e))),
        _ => CheckReason::Http(shorten(&root_message(e))),
    }
}

/// Looks for a rustls error in `err` and in the io::Errors it wraps. `io::Error::source`
/// skips the wrapped error itself (and hyper wraps io errors in io errors), so this
/// descends through `get_ref`. Records the innermost io error kind on the way.
fn find_tls<'a>(
    err: &'a (dyn std::error::Error + 'static),
    io_kind: &mut Option<io::ErrorKind>,
) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let io = err.downcast_ref::<io::Error>()?;
    *io_kind = Some(io.kind());
    find_tls(io.get_ref()?, io_kind)
}

fn root_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn tls_short(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "unknown issuer".to_owned(),
            C::NotValidForName | C::NotValidForNameContext { .. } => "name mismatch".to_owned(),
            C::Expired | C::ExpiredContext { .. } => "certificate expired".to_owned(),
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate not yet valid".to_owned(),
            C::Revoked => "certificate revoked".to_owned(),
            C::BadSignature => "bad certificate signature".to_owned(),
            other => shorten(&format!("{other:?}").to_lowercase()),
        },
        rustls::Error::AlertReceived(alert) => shorten(&format!("alert {alert:?}").to_lowercase()),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "not a tls server".to_owned()
        }
        other => shorten(&other.to_string()),
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(MAX_REASON_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::{HeaderMap as AxHeaders, StatusCode};
    use axum::routing::get;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// An axum backend on an ephemeral loopback port.
    async fn http_backend() -> u16 {
        http_backend_on(&[LOCAL]).await
    }

    /// The same backend on several loopback addresses, all on one port.
    async fn http_backend_on(ips: &[IpAddr]) -> u16 {
        let app = Router::new()
            .route("/ok", get(|| async { "hello meridian" }))
            .route(
                "/fail",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "no") }),
            )
            .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
            .route(
                "/redirect",
                get(|| async { (StatusCode::FOUND, [("location", "/elsewhere")]) }),
            )
            .route(
                "/big",
                get(|| async {
                    let mut body = "a".repeat(MAX_BODY_BYTES);
                    body.push_str("needle");
                    body
                }),
            )
            .route(
                "/echo",
                get(|headers: AxHeaders| async move {
                    let get = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned()
                    };
                    format!("host={} token={}", get("host"), get("x-token"))
                }),
            );
        let mut port = 0;
        for ip in ips {
            let listener = TcpListener::bind((*ip, port)).await.unwrap();
            port = listener.local_addr().unwrap().port();
            tokio::spawn(axum::serve(listener, app.clone()).into_future());
        }
        port
    }

    /// A port with nothing listening (bound, then released).
    async fn closed_port() -> u16 {
        let l = TcpListener::bind((LOCAL, 0)).await.unwrap();
        l.local_addr().unwrap().port()
    }

    /// Accepts connections and never answers.
    async fn silent_backend() -> u16 {
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        port
    }

    fn spec(kind: CheckKind, port: u16, path: &str) -> CheckSpec {
        CheckSpec {
            path: path.to_owned(),
            timeout: Duration::from_secs(2),
            ..CheckSpec::new(kind, port)
        }
    }

    async fn run(spec: CheckSpec) -> CheckOutcome {
        Checker::new(spec).unwrap().check(LOCAL).await
    }

    #[tokio::test]
    async fn http_cases() {
        let port = http_backend().await;
        let closed = closed_port().await;
        type Case = (&'static str, CheckSpec, &'static str);
        let cases: Vec<Case> = vec![
            ("status ok", spec(CheckKind::Http, port, "/ok"), "ok"),
            (
                "status bad",
                spec(CheckKind::Http, port, "/fail"),
                "status 503",
            ),
            (
                "404 not in default",
                spec(CheckKind::Http, port, "/nope"),
                "status 404",
            ),
            (
                "redirect not followed, passes",
                spec(CheckKind::Http, port, "/redirect"),
                "ok",
            ),
            (
                "custom status list",
                CheckSpec {
                    expect_status: vec![200..=200, 418..=418],
                    ..spec(CheckKind::Http, port, "/teapot")
                },
                "ok",
            ),
            (
                "302 outside custom list",
                CheckSpec {
                    expect_status: vec![200..=299],
                    ..spec(CheckKind::Http, port, "/redirect")
                },
                "status 302",
            ),
            (
                "body match",
                CheckSpec {
                    expect_body: Some("meridian".into()),
                    ..spec(CheckKind::Http, port, "/ok")
                },
                "ok",
            ),
            (
                "body mismatch",
                CheckSpec {
                    expect_body: Some("goodbye".into()),
                    ..spec(CheckKind::Http, port, "/ok")
                },
                "body mismatch",
            ),
            (
                "needle beyond 64 KiB is not seen",
                CheckSpec {
                    expect_body: Some("needle".into()),
                    ..spec(CheckKind::Http, port, "/big")
                },
                "body mismatch",
            ),
            (
                "host and headers are sent",
                CheckSpec {
                    host: Some("www.shop.test".into()),
                    headers: vec![("X-Token".into(), "t1".into())],
                    expect_body: Some(format!("host=www.shop.test:{port} token=t1")),
                    ..spec(CheckKind::Http, port, "/echo")
                },
                "ok",
            ),
            (
                "connect refused",
                spec(CheckKind::Http, closed, "/"),
                "connect refused",
            ),
            ("tcp open", spec(CheckKind::Tcp, port, "/"), "ok"),
            (
                "tcp closed",
                spec(CheckKind::Tcp, closed, "/"),
                "connect refused",
            ),
        ];
        for (name, spec, want) in cases {
            let out = run(spec).await;
            assert_eq!(out.reason.to_string(), want, "{name}");
            assert_eq!(out.ok, want == "ok", "{name}");
        }
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let port = silent_backend().await;
        let out = run(CheckSpec {
            timeout: Duration::from_millis(300),
            ..spec(CheckKind::Http, port, "/")
        })
        .await;
        assert_eq!(out.reason, CheckReason::Timeout);
        assert!(!out.ok);
        assert!(
            out.latency >= Duration::from_millis(300),
            "{:?}",
            out.latency
        );
        assert!(out.latency < Duration::from_secs(2), "{:?}", out.latency);
    }

    #[tokio::test]
    async fn one_checker_serves_many_checks_and_endpoints() {
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let port = http_backend_on(&[LOCAL, other]).await;
        let checker = Arc::new(
            Checker::new(CheckSpec {
                host: Some("www.shop.test".into()),
                ..spec(CheckKind::Http, port, "/ok")
            })
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for ip in [LOCAL, other, LOCAL] {
            let c = checker.clone();
            tasks.push(tokio::spawn(async move { c.check(ip).await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().reason, CheckReason::Ok);
        }
        // One client per endpoint address, reused.
        assert_eq!(checker.clients.lock().unwrap().len(), 2);
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let cases: Vec<(CheckSpec, &str)> = vec![
            (spec(CheckKind::Http, 80, "ok"), "path `ok`"),
            (
                CheckSpec {
                    headers: vec![("Host".into(), "x".into())],
                    ..spec(CheckKind::Http, 80, "/")
                },
                "set `host` instead",
            ),
            (
                CheckSpec {
                    headers: vec![("bad header".into(), "x".into())],
                    ..spec(CheckKind::Http, 80, "/")
                },
                "header `bad header`",
            ),
            (
                CheckSpec {
                    host: Some("bad host!".into()),
                    ..spec(CheckKind::Http, 80, "/")
                },
                "host `bad host!`",
            ),
            (
                CheckSpec {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..spec(CheckKind::Https, 443, "/")
                },
                "/nonexistent/ca.pem: ",
            ),
        ];
        for (spec, want) in cases {
            let err = Checker::new(spec).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    // ---- HTTPS: a CA and a server certificate generated per test run ----

    struct Pki {
        ca_pem: String,
        server_config: Arc<rustls::ServerConfig>,
    }

    fn pki(ca_name: &str, names: &[&str]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Distinct CA names, as real CAs have: a verifier then reports "unknown issuer"
        // rather than a signature mismatch against a same-named CA.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("test ca {ca_name}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let leaf = CertificateParams::new(names)
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let server_config = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key_der)
            .unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(server_config),
        }
    }

    /// A minimal HTTPS server answering `sni=<server name>` to every request.
    async fn https_backend(config: Arc<rustls::ServerConfig>) -> u16 {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = format!("sni={sni}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    fn write_pem(dir: &Path, name: &str, pem: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }

    #[tokio::test]
    async fn https_cases() {
        let good = pki("good", &["backend.test"]);
        let other = pki("other", &["backend.test"]);
        let port = https_backend(good.server_config.clone()).await;
        let http_port = http_backend().await;
        let dir = std::env::temp_dir().join(format!("meridian-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good_ca = write_pem(&dir, "good.pem", &good.ca_pem);
        let wrong_ca = write_pem(&dir, "wrong.pem", &other.ca_pem);

        let https = |host: Option<&str>, verify: bool, ca: Option<&PathBuf>| CheckSpec {
            host: host.map(str::to_owned),
            tls_verify: verify,
            ca_file: ca.cloned(),
            expect_body: host.map(|h| format!("sni={h}")),
            ..spec(CheckKind::Https, port, "/")
        };
        let cases: Vec<(&str, CheckSpec, &str)> = vec![
            (
                "verified with ca_file, sni = host",
                https(Some("backend.test"), true, Some(&good_ca)),
                "ok",
            ),
            (
                "wrong ca",
                https(Some("backend.test"), true, Some(&wrong_ca)),
                "tls: unknown issuer",
            ),
            (
                "wrong name",
                https(Some("other.test"), true, Some(&good_ca)),
                "tls: name mismatch",
            ),
            (
                "no verification",
                https(Some("other.test"), false, None),
                "ok",
            ),
            ("no verification, no host", https(None, false, None), "ok"),
            (
                "ip is not in the certificate",
                https(None, true, Some(&good_ca)),
                "tls: name mismatch",
            ),
            (
                "plain http server",
                CheckSpec {
                    port: http_port,
                    ..https(Some("backend.test"), true, Some(&good_ca))
                },
                "tls: not a tls server",
            ),
        ];
        for (name, spec, want) in cases {
            let out = run(spec).await;
            assert_eq!(out.reason.to_string(), want, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ca_file_without_certificates_is_rejected() {
        let dir = std::env::temp_dir().join(format!("meridian-ca-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = write_pem(&dir, "empty.pem", "not a pem file\n");
        let err = Checker::new(CheckSpec {
            ca_file: Some(path),
            ..spec(CheckKind::Https, 443, "/")
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("no usable CA certificate"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
