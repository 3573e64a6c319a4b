//! A client for etcd's v3 JSON gateway: unary calls (range, txn, put, leases, auth) and the
//! watch stream, over reqwest.
//!
//! Keys and values travel base64-encoded and 64-bit numbers as strings, as the gateway's
//! JSON mapping of the protobuf messages has them. Every call goes to the endpoint that
//! answered last and moves on to the next one when an endpoint cannot be reached or has no
//! leader (gRPC UNAVAILABLE), so a cluster keeps being used while one member is down. With a
//! user, a token from `/v3/auth/authenticate` rides in `Authorization` and is fetched again
//! when etcd says it expired.
//!
//! Owns: the wire format and the endpoint choice. Never: retries a call more than once per
//! endpoint or sleeps (callers own their backoff, [`super::Backoff`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use data_encoding::BASE64;
use serde_json::{Value, json};

use super::{EtcdOptions, range_end};

/// Longest a unary call may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a liveness ping may take: a partition (no answer, no reset) shows within it.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest watch message buffered (etcd's own request limit is 1.5 MiB by default).
const MAX_WATCH_LINE: usize = 32 * 1024 * 1024;

/// gRPC status codes etcd answers with.
mod code {
    pub const NOT_FOUND: i64 = 5;
    pub const DEADLINE_EXCEEDED: i64 = 4;
    pub const UNAVAILABLE: i64 = 14;
    pub const UNAUTHENTICATED: i64 = 16;
}

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The client cannot be set up (TLS files, URLs).
    #[error("etcd client: {0}")]
    Setup(String),
    /// No endpoint could be reached (or none has a leader).
    #[error("etcd unreachable ({endpoints}): {error}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// The last error.
        error: String,
    },
    /// etcd answered with an error.
    #[error("etcd {endpoint}: {message}")]
    Server {
        /// Who answered.
        endpoint: String,
        /// The gRPC status code.
        code: i64,
        /// etcd's message.
        message: String,
    },
    /// The answer is not what the gateway sends.
    #[error("etcd {endpoint}: unexpected answer: {message}")]
    Decode {
        /// Who answered.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
}

impl EtcdError {
    /// True when another endpoint may do better (this one is down or has no leader).
    fn is_failover(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Server { code: c, .. } => {
                *c == code::UNAVAILABLE || *c == code::DEADLINE_EXCEEDED
            }
            _ => false,
        }
    }

    /// True when etcd says the lease (or key) is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Server { code: c, .. } if *c == code::NOT_FOUND)
    }
}

/// One key-value pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// Changes since it was created (1 for a new key).
    pub version: i64,
    /// Its lease, 0 for none.
    pub lease: i64,
}

impl Kv {
    /// The key as text (keys Meridian writes are UTF-8).
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

/// The keys of a range at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// The store's revision when it was read.
    pub revision: i64,
    /// The keys, in key order.
    pub kvs: Vec<Kv>,
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// True for a delete (the key is gone; `kv.value` is empty).
    pub deleted: bool,
    /// The key as it is now.
    pub kv: Kv,
}

/// One message of a watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is set up.
    Created,
    /// Changes, all of one or more whole revisions.
    Events {
        /// The store's revision.
        revision: i64,
        /// The changes.
        events: Vec<Event>,
    },
    /// etcd ended the watch (its start revision was compacted, or a permission changed).
    Canceled {
        /// etcd's reason.
        reason: String,
    },
}

/// Accepts a 64-bit number as the gateway writes it (a string) or as a plain number; a
/// missing field is 0 (proto3 leaves zero values out).
fn num(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(v: Option<&Value>) -> Result<Vec<u8>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => BASE64.decode(s.as_bytes()).map_err(|e| e.to_string()),
        Some(other) => Err(format!("expected base64, found {other}")),
    }
}

/// Base64 as the gateway wants `bytes` fields.
pub fn b64(data: &[u8]) -> String {
    BASE64.encode(data)
}

fn parse_kv(v: &Value) -> Result<Kv, String> {
    Ok(Kv {
        key: bytes(v.get("key"))?,
        value: bytes(v.get("value"))?,
        mod_revision: num(v.get("mod_revision")),
        version: num(v.get("version")),
        lease: num(v.get("lease")),
    })
}

/// The revision in a response's header.
pub fn header_revision(v: &Value) -> i64 {
    num(v.get("header").and_then(|h| h.get("revision")))
}

/// Parses a `/v3/kv/range` answer.
pub fn parse_range(v: &Value) -> Result<Range, String> {
    let kvs = match v.get("kvs") {
        Some(Value::Array(items)) => items.iter().map(parse_kv).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(Range {
        revision: header_revision(v),
        kvs,
    })
}

/// Parses one line of a `/v3/watch` stream.
pub fn parse_watch_line(line: &[u8]) -> Result<WatchMessage, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if let Some(err) = v.get("error") {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| err.to_string(), str::to_string);
        return Ok(WatchMessage::Canceled { reason: message });
    }
    let r = v.get("result").ok_or("no `result` in a watch message")?;
    if r.get("canceled").and_then(Value::as_bool) == Some(true)
        || num(r.get("compact_revision")) > 0
    {
        let reason = r
            .get("cancel_reason")
            .and_then(Value::as_str)
            .unwrap_or("compacted")
            .to_string();
        return Ok(WatchMessage::Canceled { reason });
    }
    if r.get("created").and_then(Value::as_bool) == Some(true) {
        return Ok(WatchMessage::Created);
    }
    let mut events = Vec::new();
    if let Some(Value::Array(items)) = r.get("events") {
        for e in items {
            let kv = parse_kv(e.get("kv").unwrap_or(&Value::Null))?;
            let deleted = e.get("type").and_then(Value::as_str) == Some("DELETE");
            events.push(Event { deleted, kv });
        }
    }
    Ok(WatchMessage::Events {
        revision: header_revision(r),
        events,
    })
}

/// The body of a range over every key starting with `prefix`.
pub fn prefix_range_request(prefix: &str) -> Value {
    json!({
        "key": b64(prefix.as_bytes()),
        "range_end": b64(&range_end(prefix.as_bytes())),
    })
}

/// An open watch: messages as they arrive.
pub struct Watch {
    response: reqwest::Response,
    buf: Vec<u8>,
    endpoint: String,
}

impl Watch {
    /// The next message; `Ok(None)` when etcd closed the stream.
    pub async fn next(&mut self) -> Result<Option<WatchMessage>, EtcdError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return parse_watch_line(line)
                    .map(Some)
                    .map_err(|message| EtcdError::Decode {
                        endpoint: self.endpoint.clone(),
                        message,
                    });
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(EtcdError::Unreachable {
                        endpoints: self.endpoint.clone(),
                        error: format!("watch stream: {e}"),
                    });
                }
            }
            if self.buf.len() > MAX_WATCH_LINE {
                return Err(EtcdError::Decode {
                    endpoint: self.endpoint.clone(),
                    message: "watch message too large".into(),
                });
            }
        }
    }
}

/// The gateway client. Cheap to share (`Arc`).
pub struct Client {
    http: reqwest::Client,
    endpoints: Vec<String>,
    preferred: AtomicUsize,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No password or token in logs.
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `opts` (no connection is made yet).
    pub fn new(opts: &EtcdOptions) -> Result<Arc<Self>, EtcdError> {
        if opts.endpoints.is_empty() {
            return Err(EtcdError::Setup("no endpoint given (--etcd URL)".into()));
        }
        let mut endpoints = Vec::new();
        for e in &opts.endpoints {
            let e = e.trim().trim_end_matches('/');
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(EtcdError::Setup(format!(
                    "--etcd `{e}`: give a URL such as http://127.0.0.1:2379"
                )));
            }
            endpoints.push(e.to_string());
        }
        let credentials = match (&opts.user, &opts.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(EtcdError::Setup(
                    "give both an etcd user and its password, or neither".into(),
                ));
            }
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(opts)?)
            .user_agent(concat!("meridian/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(5))
            .build()
            .map_err(|e| EtcdError::Setup(e.to_string()))?;
        Ok(Arc::new(Self {
            http,
            endpoints,
            preferred: AtomicUsize::new(0),
            credentials,
            token: Mutex::new(None),
        }))
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_token(&self, token: Option<String>) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// One POST to one endpoint; a non-2xx answer becomes [`EtcdError::Server`].
    async fn post(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
        token: Option<&str>,
    ) -> Result<reqwest::Response, EtcdError> {
        let mut req = self
            .http
            .post(format!("{endpoint}{path}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(t) = token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let response = req.send().await.map_err(|e| EtcdError::Unreachable {
            endpoints: endpoint.to_string(),
            error: describe(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = read_text(response, endpoint).await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = v
            .get("message")
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("HTTP {status}: {}", text.trim()), str::to_string);
        let code = match num(v.get("code")) {
            0 if status.is_server_error() => code::UNAVAILABLE,
            c => c,
        };
        Err(EtcdError::Server {
            endpoint: endpoint.to_string(),
            code,
            message,
        })
    }

    async fn authenticate(&self, endpoint: &str) -> Result<Option<String>, EtcdError> {
        let Some((user, password)) = &self.credentials else {
            return Ok(None);
        };
        if let Some(t) = self.token() {
            return Ok(Some(t));
        }
        let body = json!({ "name": user, "password": password });
        let response = self
            .post(
                endpoint,
                "/v3/auth/authenticate",
                &body,
                Some(REQUEST_TIMEOUT),
                None,
            )
            .await?;
        let v = read_json(response, endpoint).await?;
        let token = v
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| EtcdError::Decode {
                endpoint: endpoint.to_string(),
                message: "no token in the authenticate answer".into(),
            })?
            .to_string();
        self.set_token(Some(token.clone()));
        Ok(Some(token))
    }

    /// One call at one endpoint, authenticating first (again if the token expired).
    async fn attempt(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, EtcdError> {
        let token = self.authenticate(endpoint).await?;
        match self
            .post(endpoint, path, body, timeout, token.as_deref())
            .await
        {
            Err(EtcdError::Server { code: c, .. })
                if c == code::UNAUTHENTICATED && token.is_some() =>
            {
                self.set_token(None);
                let token = self.authenticate(endpoint).await?;
                self.post(endpoint, path, body, timeout, token.as_deref())
                    .await
            }
            other => other,
        }
    }

    /// Sends to the endpoint that answered last, then to the others in turn while they are
    /// unreachable or without a leader.
    async fn open(
        &self,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<(reqwest::Response, String), EtcdError> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let Some(endpoint) = self.endpoints.get(idx) else {
                continue;
            };
            match self.attempt(endpoint, path, body, timeout).await {
                Ok(r) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok((r, endpoint.clone()));
                }
                Err(e) if e.is_failover() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(EtcdError::Unreachable { error, .. }) => EtcdError::Unreachable {
                endpoints: self.endpoints.join(","),
                error,
            },
            Some(e) => e,
            None => EtcdError::Setup("no endpoint".into()),
        })
    }

    /// A unary call: the answer's JSON.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        self.call_within(path, body, REQUEST_TIMEOUT).await
    }

    async fn call_within(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, EtcdError> {
        let (response, endpoint) = self.open(path, body, Some(timeout)).await?;
        read_json(response, &endpoint).await
    }

    /// Every key starting with `prefix`, read at one revision (linearizable: a member that
    /// lost quorum cannot answer it).
    pub async fn range_prefix(&self, prefix: &str) -> Result<Range, EtcdError> {
        let v = self
            .call("/v3/kv/range", &prefix_range_request(prefix))
            .await?;
        parse_range(&v).map_err(|message| self.decode(message))
    }

    /// A cheap linearizable read within [`PING_TIMEOUT`]: succeeds only while the cluster
    /// has quorum and the path to it carries packets.
    pub async fn ping(&self, key: &str) -> Result<i64, EtcdError> {
        let body = json!({ "key": b64(key.as_bytes()), "count_only": true });
        let v = self
            .call_within("/v3/kv/range", &body, PING_TIMEOUT)
            .await?;
        Ok(header_revision(&v))
    }

    /// A transaction (`compare`, `success` and `failure` in the gateway's JSON form):
    /// whether the comparisons held, and the revision after it.
    pub async fn txn(&self, body: &Value) -> Result<(bool, i64), EtcdError> {
        let v = self.call("/v3/kv/txn", body).await?;
        let ok = v.get("succeeded").and_then(Value::as_bool).unwrap_or(false);
        Ok((ok, header_revision(&v)))
    }

    /// Puts one key, attached to `lease` (0 for none); the revision it got.
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let body = json!({
            "key": b64(key.as_bytes()),
            "value": b64(value),
            "lease": lease.to_string(),
        });
        let v = self.call("/v3/kv/put", &body).await?;
        Ok(header_revision(&v))
    }

    /// Grants a lease of `ttl` seconds; its id.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))
            .await?;
        match num(v.get("ID")) {
            0 => Err(self.decode("no lease id in the grant answer".into())),
            id => Ok(id),
        }
    }

    /// Renews a lease; `None` when it has expired (etcd answers a TTL of 0).
    pub async fn lease_keepalive(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))
            .await?;
        let result = v.get("result").unwrap_or(&v);
        Ok(Some(num(result.get("TTL"))).filter(|ttl| *ttl > 0))
    }

    /// Revokes a lease: its keys go at once (a prober that stops cleanly).
    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))
            .await
            .map(|_| ())
    }

    /// Watches every key starting with `prefix` from `start_revision` on.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, EtcdError> {
        let body = json!({ "create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&range_end(prefix.as_bytes())),
            "start_revision": start_revision.to_string(),
        }});
        let (response, endpoint) = self.open("/v3/watch", &body, None).await?;
        Ok(Watch {
            response,
            buf: Vec::new(),
            endpoint,
        })
    }

    fn decode(&self, message: String) -> EtcdError {
        EtcdError::Decode {
            endpoint: self.endpoints.join(","),
            message,
        }
    }
}

async fn read_text(response: reqwest::Response, endpoint: &str) -> Result<String, EtcdError> {
    response.text().await.map_err(|e| EtcdError::Unreachable {
        endpoints: endpoint.to_string(),
        error: describe(&e),
    })
}

async fn read_json(response: reqwest::Response, endpoint: &str) -> Result<Value, EtcdError> {
    let text = read_text(response, endpoint).await?;
    serde_json::from_str(&text).map_err(|e| EtcdError::Decode {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        let mut last = String::from("connect failed");
        while let Some(s) = source {
            last = format!("connect failed: {s}");
            source = s.source();
        }
        last
    } else {
        e.to_string()
    }
}

fn tls_config(opts: &EtcdOptions) -> Result<rustls::ClientConfig, EtcdError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let setup = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        EtcdError::Setup(format!("{}: {e}", what.display()))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Setup(e.to_string()))?;
    let builder = match &opts.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| setup(path, &e))? {
                let cert = cert.map_err(|e| setup(path, &e))?;
                roots.add(cert).map_err(|e| setup(path, &e))?;
            }
            if roots.is_empty() {
                return Err(setup(path, &"no CERTIFICATE block found"));
            }
            builder.with_root_certificates(roots)
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| EtcdError::Setup(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    let mut config = match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(|e| setup(cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| setup(cert, &e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| setup(key, &e))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| setup(cert, &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(EtcdError::Setup(
                "give both --etcd-cert and --etcd-key, or neither".into(),
            ));
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_answers_parse_with_string_numbers_and_missing_zeros() {
        let v: Value = serde_json::from_str(
            r#"{"header":{"revision":"7"},"kvs":[{"key":"L20vYQ==","create_revision":"2",
            "mod_revision":"5","version":"2","value":"aGk="},{"key":"L20vYg==","mod_revision":"6"}],
            "count":"2"}"#,
        )
        .unwrap();
        let r = parse_range(&v).unwrap();
        assert_eq!(r.revision, 7);
        assert_eq!(r.kvs.len(), 2);
        assert_eq!(r.kvs[0].key, b"/m/a");
        assert_eq!(r.kvs[0].value, b"hi");
        assert_eq!((r.kvs[0].mod_revision, r.kvs[0].version), (5, 2));
        assert_eq!(r.kvs[1].value, b"");
        let empty = parse_range(&json!({"header":{"revision":"3"}})).unwrap();
        assert_eq!((empty.revision, empty.kvs.len()), (3, 0));
        assert!(parse_range(&json!({"kvs":[{"key":"!!"}]})).is_err());
    }

    #[test]
    fn watch_lines_parse_into_messages() {
        let created = br#"{"result":{"header":{"revision":"3"},"created":true}}"#;
        assert_eq!(parse_watch_line(created).unwrap(), WatchMessage::Created);
        let events = br#"{"result":{"header":{"revision":"5"},"events":[{"kv":{"key":"eA==",
            "mod_revision":"4","value":"eQ=="}},{"type":"DELETE","kv":{"key":"eg==","mod_revision":"5"}}]}}"#;
        let WatchMessage::Events { revision, events } = parse_watch_line(events).unwrap() else {
            panic!("events expected");
        };
        assert_eq!(revision, 5);
        assert_eq!(events.len(), 2);
        assert!(!events[0].deleted && events[0].kv.value == b"y");
        assert!(events[1].deleted && events[1].kv.key == b"z");
        let compacted =
            br#"{"result":{"header":{"revision":"9"},"compact_revision":"8","canceled":true}}"#;
        assert!(matches!(
            parse_watch_line(compacted).unwrap(),
            WatchMessage::Canceled { .. }
        ));
        let error = br#"{"error":{"grpc_code":14,"message":"no leader"}}"#;
        assert_eq!(
            parse_watch_line(error).unwrap(),
            WatchMessage::Canceled {
                reason: "no leader".into()
            }
        );
        assert!(parse_watch_line(b"{").is_err());
    }

    #[test]
    fn prefix_ranges_are_base64_with_the_incremented_end() {
        let v = prefix_range_request("/m/");
        assert_eq!(v["key"], b64(b"/m/"));
        assert_eq!(v["range_end"], b64(b"/m0"));
    }

    #[test]
    fn bad_options_are_refused_with_the_flag_named() {
        let opts = |endpoints: &[&str]| EtcdOptions {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            ..EtcdOptions::default()
        };
        let err = Client::new(&opts(&[])).unwrap_err().to_string();
        assert!(err.contains("--etcd"), "{err}");
        let err = Client::new(&opts(&["127.0.0.1:2379"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://"), "{err}");
        let mut half = opts(&["http://127.0.0.1:2379"]);
        half.user = Some("u".into());
        assert!(Client::new(&half).is_err());
    }
}
