//! One health check of one endpoint: HTTP, HTTPS (with optional JSON body checks, a load
//! figure and a latency limit), a TCP connect, or a program run without a shell (exec).
//!
//! Owns: [`CheckSpec`] (what to check, already validated by config loading), [`Checker`] (the
//! prepared check: TLS settings, CA file and request headers built once) and [`CheckOutcome`]
//! with its short [`CheckReason`] (`connect refused`, `status 503`, `timeout`,
//! `tls: unknown issuer`).
//!
//! Never: applies rise/fall (that is `probe::state`), schedules or retries, follows redirects,
//! reuses a connection between checks (a pooled connection would hide a backend that no longer
//! accepts new ones), or reads more than [`MAX_BODY_BYTES`] of a response.
//!
//! TLS is rustls with the ring provider. With `tls_verify` the certificate is checked against
//! the system roots, or only against `ca_file` when one is given; the name checked (and sent as
//! SNI) is `host` when set, otherwise the endpoint's IP address.
//!
//! Cost (issue 16, one prober checks 10,000 endpoints a second; docs/performance.md, "Probe
//! load"): a check is one task doing one TCP connection, `GET` with `Connection: close` over
//! hyper's HTTP/1 connection API (driven in the check's own task, no connection task, no pool),
//! and a close with `SO_LINGER` 0, an RST as HAProxy's health checks do: no FIN exchange and no
//! `TIME_WAIT` on either side, so the prober's kernel sends four segments per check instead of
//! about seven and the backend keeps no socket behind. The headers are built once per checker.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Body as _;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

// What to check is configuration (validated by `config::check`); it is defined there so that
// config does not depend on the prober, and re-exported here where the checks run.
pub use crate::config::check::{
    CheckKind, CheckSpec, DEFAULT_EXPECT_STATUS, DEFAULT_TIMEOUT, MAX_BODY_BYTES,
};
use crate::config::model::MAX_WEIGHT;

/// Longest reason text kept from a TLS or HTTP error, so reports stay small.
const MAX_REASON_CHARS: usize = 80;

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
    /// An `expect_json` pointer is missing or has another value
    /// (`json /status: "unhealthy", want "healthy"`), or the body is not JSON.
    Json(String),
    /// Passed, but slower than `max_latency` (`slow: 612ms > 500ms`).
    Slow {
        /// How long it took, milliseconds.
        took_ms: u64,
        /// The limit, milliseconds.
        limit_ms: u64,
    },
    /// The exec check's program exited non-zero (`exit 3`) or by a signal (`exit signal`).
    Exit(Option<i32>),
    /// The exec check's program could not be started (`exec: permission denied`).
    Exec(String),
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
            Self::Json(s) => write!(f, "json {s}"),
            Self::Slow { took_ms, limit_ms } => write!(f, "slow: {took_ms}ms > {limit_ms}ms"),
            Self::Exit(Some(code)) => write!(f, "exit {code}"),
            Self::Exit(None) => f.write_str("exit signal"),
            Self::Exec(s) => write!(f, "exec: {s}"),
        }
    }
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOutcome {
    /// Whether the check passed.
    pub ok: bool,
    /// Time from start to verdict (the timeout, when it timed out).
    pub latency: Duration,
    /// Why.
    pub reason: CheckReason,
    /// The endpoint's load, 0.0-1.0 (`load_pointer`, or `load` in an exec check's output).
    pub load: Option<f64>,
    /// A weight hint, 0-1000 (`weight` in an exec check's output).
    pub weight: Option<u32>,
}

/// What a check learned besides pass or fail.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Signals {
    pub(crate) load: Option<f64>,
    pub(crate) weight: Option<u32>,
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
}

/// A prepared check: run [`Checker::check`] against any number of endpoints, concurrently.
#[derive(Debug)]
pub struct Checker {
    spec: CheckSpec,
    tls: Arc<rustls::ClientConfig>,
    /// Every request header but `Host` (and `Host` too when it does not depend on the endpoint).
    headers: HeaderMap,
    /// `host` when it is a DNS name: the TLS server name; the connection still goes to the
    /// endpoint.
    dns_host: Option<rustls::pki_types::ServerName<'static>>,
    /// The request target (`path`), parsed once.
    path: hyper::Uri,
}

impl Checker {
    /// Validates the spec, loads the CA file and builds the TLS configuration and the headers.
    pub fn new(spec: CheckSpec) -> Result<Self, CheckError> {
        if !spec.path.starts_with('/') {
            return Err(CheckError::Path(spec.path));
        }
        let path = hyper::Uri::try_from(spec.path.as_str())
            .map_err(|_| CheckError::Path(spec.path.clone()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| CheckError::Header(name.clone()))?;
            if n == header::HOST {
                return Err(CheckError::HostHeader);
            }
            let v = HeaderValue::from_str(value).map_err(|_| CheckError::Header(name.clone()))?;
            headers.append(n, v);
        }
        // As the reqwest client did before: its user agent replaces a configured one.
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("meridian-probe/", env!("CARGO_PKG_VERSION"))),
        );
        if !headers.contains_key(header::ACCEPT) {
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        // Never a second request on this connection: the server may close right after
        // answering, and hyper does not wait for more.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let dns_host = match &spec.host {
            None => None,
            Some(h) => match ServerName::try_from(h.as_str()) {
                Ok(name @ ServerName::DnsName(_)) => {
                    // The URL authority as a browser sends it: the port unless the default.
                    let v = HeaderValue::from_str(&authority(h, spec.port, spec.kind))
                        .map_err(|_| CheckError::Host(h.clone()))?;
                    headers.insert(header::HOST, v);
                    Some(name.to_owned())
                }
                Ok(_) => {
                    // An IP as `host`: only the Host header changes; TLS names the endpoint.
                    let v = HeaderValue::from_str(h).map_err(|_| CheckError::Host(h.clone()))?;
                    headers.insert(header::HOST, v);
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
            path,
        })
    }

    /// The spec this checker runs.
    pub fn spec(&self) -> &CheckSpec {
        &self.spec
    }

    /// Checks one endpoint on the spec's port. Never fails: every problem is a reason.
    pub async fn check(&self, ip: IpAddr) -> CheckOutcome {
        let start = Instant::now();
        let (mut reason, signals) =
            // Boxed: the HTTPS state (a TLS session, hyper's connection) is kilobytes, and
            // unboxed it would sit in every endpoint's check task all the time, checking or
            // not (about 5 KiB times 10,000 endpoints); one allocation per check is cheaper.
            match tokio::time::timeout(self.spec.timeout, Box::pin(self.run(ip))).await {
                Ok(done) => done,
                Err(_) => (CheckReason::Timeout, Signals::default()),
            };
        let latency = start.elapsed();
        if let (CheckReason::Ok, Some(limit)) = (&reason, self.spec.max_latency) {
            if latency > limit {
                reason = CheckReason::Slow {
                    took_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                    limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                };
            }
        }
        CheckOutcome {
            ok: reason == CheckReason::Ok,
            latency,
            reason,
            load: signals.load,
            weight: signals.weight,
        }
    }

    async fn run(&self, ip: IpAddr) -> (CheckReason, Signals) {
        let target = SocketAddr::new(ip, self.spec.port);
        let none = Signals::default();
        if self.spec.kind == CheckKind::Exec {
            return super::exec::run(&self.spec, ip).await;
        }
        let stream = match TcpStream::connect(target).await {
            Ok(s) => s,
            Err(e) => return (from_connect_io(&e), none),
        };
        // Close with an RST (module docs). Failing to set it only costs a FIN exchange.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        match self.spec.kind {
            CheckKind::Http => self.exchange(stream, target).await,
            CheckKind::Https => {
                // The client's Finished and the request are two writes: without this, Nagle
                // holds the request until the server's delayed ACK.
                let _ = stream.set_nodelay(true);
                let name = match &self.dns_host {
                    Some(name) => name.clone(),
                    None => ServerName::IpAddress(ip.into()),
                };
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
                match tls.connect(name, stream).await {
                    Ok(stream) => self.exchange(stream, target).await,
                    Err(e) => (from_tls_io(&e), none),
                }
            }
            // An open port is all a TCP check asks; dropping the stream resets it.
            CheckKind::Tcp | CheckKind::Exec => (CheckReason::Ok, none),
        }
    }

    /// One `GET` on a fresh connection, driven in this task, and its verdict.
    async fn exchange<S>(&self, stream: S, target: SocketAddr) -> (CheckReason, Signals)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let none = Signals::default();
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(NoShutdown(stream))).await {
                Ok(pair) => pair,
                Err(e) => return (from_http_error(&e), none),
            };
        let request = self.request(target);
        let verdict = async {
            match sender.send_request(request).await {
                Ok(response) => self.judge(response).await,
                Err(e) => (from_http_error(&e), none),
            }
        };
        tokio::pin!(conn, verdict);
        tokio::select! {
            v = &mut verdict => v,
            // The connection ended (closed, or failed): whatever it delivered or the error
            // it left is in the response and its body.
            _ = &mut conn => verdict.await,
        }
    }

    fn request(&self, target: SocketAddr) -> hyper::Request<NoBody> {
        let mut request = hyper::Request::new(NoBody);
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        *headers = self.headers.clone();
        if !headers.contains_key(header::HOST) {
            let host = authority(&target.ip().to_string(), target.port(), self.spec.kind);
            if let Ok(v) = HeaderValue::from_str(&host) {
                headers.insert(header::HOST, v);
            }
        }
        request
    }

    async fn judge(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> (CheckReason, Signals) {
        let none = Signals::default();
        let status = response.status().as_u16();
        if !self.spec.status_ok(status) {
            return (CheckReason::Status(status), none);
        }
        if self.spec.expect_body.is_none() && !self.spec.wants_json() {
            return (CheckReason::Ok, none);
        }
        let mut incoming = response.into_body();
        let mut body = Vec::new();
        while body.len() < MAX_BODY_BYTES {
            match std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        body.extend_from_slice(data);
                    }
                }
                Some(Err(e)) => return (from_http_error(&e), none),
                None => break,
            }
        }
        body.truncate(MAX_BODY_BYTES);
        if let Some(needle) = &self.spec.expect_body {
            let needle = needle.as_bytes();
            if !needle.is_empty() && !body.windows(needle.len()).any(|w| w == needle) {
                return (CheckReason::BodyMismatch, none);
            }
        }
        if !self.spec.wants_json() {
            return (CheckReason::Ok, none);
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return (CheckReason::Json("body is not json".to_owned()), none);
        };
        let signals = Signals {
            load: self
                .spec
                .load_pointer
                .as_deref()
                .and_then(|p| load_at(&json, p)),
            weight: None,
        };
        (match_json(&self.spec, &json), signals)
    }
}

/// `host[:port]` as in a URL: IPv6 in brackets, the port left out when it is the scheme's.
fn authority(host: &str, port: u16, kind: CheckKind) -> String {
    let default = match kind {
        CheckKind::Https => 443,
        _ => 80,
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == default {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// A stream whose `shutdown` does nothing: hyper shuts its side down (a FIN, a syscall) once
/// a `Connection: close` exchange is over, and the close that follows resets it anyway
/// (`SO_LINGER` 0). Over TLS this also leaves out the `close_notify`; a health check has
/// nothing to protect from truncation once it has its answer.
struct NoShutdown<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for NoShutdown<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoShutdown<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The empty body of a `GET`.
#[derive(Debug)]
struct NoBody;

impl hyper::body::Body for NoBody {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(0)
    }
}

/// Checks every `expect_json` pointer of `spec` against `json`: the first that is missing or
/// differs fails the check.
pub(crate) fn match_json(spec: &CheckSpec, json: &serde_json::Value) -> CheckReason {
    for (pointer, want) in &spec.expect_json {
        match json.pointer(pointer) {
            None => return CheckReason::Json(shorten(&format!("{pointer}: missing, want {want}"))),
            Some(got) if !want.matches(got) => {
                return CheckReason::Json(shorten(&format!("{pointer}: {got}, want {want}")));
            }
            Some(_) => {}
        }
    }
    CheckReason::Ok
}

/// The number at `pointer`, clamped to 0.0-1.0; `None` when absent or not a number.
pub(crate) fn load_at(json: &serde_json::Value, pointer: &str) -> Option<f64> {
    json.pointer(pointer)?
        .as_f64()
        .filter(|l| l.is_finite())
        .map(|l| l.clamp(0.0, 1.0))
}

/// A weight hint at `pointer`, clamped to 0-[`MAX_WEIGHT`].
pub(crate) fn weight_at(json: &serde_json::Value, pointer: &str) -> Option<u32> {
    let w = json.pointer(pointer)?.as_f64().filter(|w| w.is_finite())?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(w.clamp(0.0, f64::from(MAX_WEIGHT)).round() as u32)
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

/// A failed TLS handshake: the rustls error when there is one, else what the connection did.
fn from_tls_io(e: &io::Error) -> CheckReason {
    let mut io_kind = None;
    if let Some(tls) = find_tls(e, &mut io_kind) {
        return CheckReason::Tls(tls_short(tls));
    }
    match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => CheckReason::ConnectRefused,
        Some(io::ErrorKind::TimedOut) => CheckReason::Timeout,
        _ => CheckReason::Connect(shorten(&root_message(e))),
    }
}

/// Finds the most specific cause in an HTTP error chain (TLS, then the I/O error kind).
fn from_http_error(e: &(dyn std::error::Error + 'static)) -> CheckReason {
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

pub(crate) fn shorten(s: &str) -> String {
    s.chars().take(MAX_REASON_CHARS).collect()
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
