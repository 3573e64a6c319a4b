//! What the health tests need beyond `harness`: backends the test stops and starts (HTTP,
//! HTTPS with a CA made per run, TCP), zone files written from a template with the backends'
//! ports, prober keys, which `meridian probe` to start (the harness's `Process` runs it), and
//! signed reports.
//!
//! Owns: the lifecycle of those backends. Must never: spawn a process itself (the harness
//! does), listen or connect anywhere but 127.0.0.x, or wait without a deadline.

use std::collections::BTreeMap;

pub use crate::harness::http_request;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::rr::RecordType;
use meridian::health::report::{
    EndpointKey, EndpointReport, KEY_ID_HEADER, Key, Keyring, ProbeReport, ProberId,
    SIGNATURE_HEADER, VoteState, sign, unix_ms,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::harness::probe_args;
use crate::harness::{
    HttpResponse, Meridian, Query, Transport, a_records, fixture, try_exchange_at,
};
pub use crate::harness::{Process, wait_until};

/// The zone every health test serves.
pub const ZONE: &str = "h.test.";
/// The TLS server name of the `secure` service's backends (the check's `host`).
pub const TLS_NAME: &str = "secure.h.test";
/// Every backend of the template: (placeholder, protocol, address).
pub const BACKENDS: &[(&str, Kind, &str)] = &[
    ("www_a", Kind::Http, "127.0.0.11"),
    ("www_b", Kind::Http, "127.0.0.12"),
    ("secure_a", Kind::Https, "127.0.0.21"),
    ("secure_b", Kind::Https, "127.0.0.22"),
    ("db_a", Kind::Tcp, "127.0.0.31"),
    ("db_b", Kind::Tcp, "127.0.0.32"),
];
/// Probers with keys in the lab's key file.
pub const PROBERS: &[&str] = &["p1", "p2", "p3", "p4"];

/// A backend protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET /health` answered `200 ok`.
    Http,
    /// The same inside TLS, with a certificate for [`TLS_NAME`] from the lab's CA.
    Https,
    /// Accepts connections.
    Tcp,
}

/// One backend on its own loopback address; `stop` closes the listener and every open
/// connection (new connections are refused), `start` listens on the same port again.
pub struct Backend {
    addr: SocketAddr,
    kind: Kind,
    tls: tokio_rustls::TlsAcceptor,
    rt: tokio::runtime::Handle,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Backend {
    /// The address and port it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True while listening.
    pub fn running(&self) -> bool {
        self.task.lock().unwrap().is_some()
    }

    /// Stops listening and drops every connection; returns once the port refuses.
    pub fn stop(&self) {
        let Some(task) = self.task.lock().unwrap().take() else {
            return;
        };
        task.abort();
        // Aborting drops the accept loop (the listener, and the JoinSet with every
        // connection) at its next poll; wait for that so "stopped" is true on return.
        let _ = self.rt.block_on(task);
    }

    /// Listens again on the same address and port (retried for up to 2 s).
    pub fn start(&self) {
        let mut slot = self.task.lock().unwrap();
        if slot.is_some() {
            return;
        }
        let addr = self.addr;
        let deadline = Instant::now() + Duration::from_secs(2);
        let listener = loop {
            match self.rt.block_on(TcpListener::bind(addr)) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebind {addr}: {e}");
                    thread::sleep(Duration::from_millis(20));
                }
            }
        };
        *slot = Some(
            self.rt
                .spawn(accept_loop(listener, self.kind, self.tls.clone())),
        );
    }
}

async fn accept_loop(listener: TcpListener, kind: Kind, tls: tokio_rustls::TlsAcceptor) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        let tls = tls.clone();
        conns.spawn(async move {
            match kind {
                // Hold the connection a moment, as a server would, then close it.
                Kind::Tcp => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    drop(stream);
                }
                Kind::Http => answer_http(stream).await,
                Kind::Https => {
                    if let Ok(s) = tls.accept(stream).await {
                        answer_http(s).await;
                    }
                }
            }
        });
    }
}

async fn answer_http(mut s: impl AsyncRead + AsyncWrite + Unpin) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if seen.len() > 16 * 1024 {
            return;
        }
    }
    let resp = if seen.starts_with(b"GET /health ") {
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    } else {
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    };
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// Everything a health scenario runs against: backends, a directory with the zones (and CA
/// file), the prober key file; nameservers and probers are started from it.
pub struct Lab {
    /// Holds zones, key file and CA; removed on drop.
    pub dir: tempfile::TempDir,
    backends: BTreeMap<&'static str, Backend>,
    keyring: Keyring,
    ca_pem: String,
    // Dropped last: backends run on it (never read, only kept alive).
    _rt: tokio::runtime::Runtime,
}

impl Lab {
    /// Starts every backend of [`BACKENDS`], writes `zones/` from the template and the key
    /// file with a fresh secret for each of [`PROBERS`].
    pub fn new() -> Lab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (ca_pem, server_config) = pki();
        let tls = tokio_rustls::TlsAcceptor::from(server_config);
        let mut backends = BTreeMap::new();
        for (name, kind, ip) in BACKENDS {
            let ip: IpAddr = ip.parse().unwrap();
            let listener = rt.block_on(TcpListener::bind((ip, 0))).unwrap();
            let addr = listener.local_addr().unwrap();
            let task = rt.spawn(accept_loop(listener, *kind, tls.clone()));
            backends.insert(
                *name,
                Backend {
                    addr,
                    kind: *kind,
                    tls: tls.clone(),
                    rt: rt.handle().clone(),
                    task: Mutex::new(Some(task)),
                },
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let mut keys = String::from("# key_id prober_id secret\n");
        for p in PROBERS {
            let secret: [u8; 32] = rand::random();
            keys.push_str(&format!(
                "{p}-k1 {p} {}\n",
                data_encoding::HEXLOWER.encode(&secret)
            ));
        }
        std::fs::write(dir.path().join("keys.txt"), &keys).unwrap();
        let keyring = Keyring::load(&dir.path().join("keys.txt")).unwrap();
        let lab = Lab {
            dir,
            backends,
            keyring,
            ca_pem,
            _rt: rt,
        };
        lab.write_zones("zones", |name| lab.backend(name).addr().port());
        lab
    }

    /// A backend by placeholder name (`www_a`).
    pub fn backend(&self, name: &str) -> &Backend {
        self.backends
            .get(name)
            .unwrap_or_else(|| panic!("no backend {name}"))
    }

    /// The zones directory every nameserver and honest prober uses.
    pub fn zones(&self) -> PathBuf {
        self.dir.path().join("zones")
    }

    /// The prober key file (also the nameservers' `--keys`).
    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("keys.txt")
    }

    /// Writes `DIR/h.test.toml` (and `ca.pem`) from the template with `port(name)` for
    /// every placeholder; returns the directory.
    pub fn write_zones(&self, dir: &str, port: impl Fn(&str) -> u16) -> PathBuf {
        let out = self.dir.path().join(dir);
        std::fs::create_dir_all(&out).unwrap();
        let mut text = std::fs::read_to_string(fixture("health/h.test.toml.in")).unwrap();
        for (name, _, _) in BACKENDS {
            text = text.replace(&format!("{{{{{name}}}}}"), &port(name).to_string());
        }
        assert!(!text.contains("{{"), "unreplaced placeholder:\n{text}");
        std::fs::write(out.join("h.test.toml"), text).unwrap();
        std::fs::write(out.join("ca.pem"), &self.ca_pem).unwrap();
        out
    }

    /// A nameserver on the lab's zones accepting the lab's prober keys, embedded prober off.
    pub fn nameserver(&self, extra: &[&str]) -> Meridian {
        let keys = self.keys().display().to_string();
        let mut args = vec!["--keys", keys.as_str()];
        args.extend_from_slice(extra);
        Meridian::serve_dir(&self.zones(), &args, false)
    }

    /// Starts `meridian probe` as `id` in `region` on `zones`, publishing to every `ns`.
    pub fn prober(&self, zones: &Path, id: &str, region: &str, ns: &[&Meridian]) -> Process {
        let urls: Vec<String> = ns
            .iter()
            .map(|n| format!("http://{}/v1/reports", n.api))
            .collect();
        self.prober_to(zones, id, region, &urls)
    }

    /// Like [`Lab::prober`], publishing to report URLs.
    pub fn prober_to(&self, zones: &Path, id: &str, region: &str, urls: &[String]) -> Process {
        let args = probe_args(zones, region, id, &self.keys(), urls);
        let p = Process::meridian(&format!("prober {id}"), &args);
        let ready = p.ready.as_deref().unwrap_or_default();
        assert!(
            ready.contains(&format!("id={id} endpoints={}", BACKENDS.len())),
            "unexpected ready line {ready:?}"
        );
        p
    }

    /// The key a prober signs with.
    pub fn key(&self, prober: &str) -> &Key {
        self.keyring.signing_key(&ProberId::new(prober)).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Before the runtime goes (fields drop in order, `_rt` last).
        for b in self.backends.values() {
            b.stop();
        }
    }
}

/// A CA and a server certificate for [`TLS_NAME`] signed by it: (CA PEM, server config).
fn pki() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meridian health test ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![TLS_NAME.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key_der)
    .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

// ---- DNS ----

/// The A addresses answered for `NAME.h.test.` over `transport`, or why the answer is
/// unacceptable during a failover (an RCODE other than NOERROR, or no address).
pub fn answer(ns: &Meridian, service: &str, transport: Transport) -> Result<Vec<Ipv4Addr>, String> {
    answer_at(ns.dns, service, transport)
}

/// Like [`answer`], for a server run as a plain [`Process`] at `dns`.
pub fn answer_at(
    dns: SocketAddr,
    service: &str,
    transport: Transport,
) -> Result<Vec<Ipv4Addr>, String> {
    let qname = format!("{service}.{ZONE}");
    let reply = try_exchange_at(dns, &Query::new(&qname, RecordType::A), transport)
        .ok_or_else(|| format!("{qname}: no reply from {dns}"))?;
    if reply.rcode() != 0 {
        return Err(format!("{qname}: rcode {}", reply.rcode()));
    }
    let v = a_records(&reply);
    if v.is_empty() {
        return Err(format!("{qname}: empty answer"));
    }
    Ok(v)
}

/// The single address a failover service answers over UDP (panics on anything else).
pub fn served(ns: &Meridian, service: &str) -> Ipv4Addr {
    let v = answer(ns, service, Transport::Udp).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.len(), 1, "{service}: one address expected, got {v:?}");
    v[0]
}

// ---- reports and status ----

/// A report from `prober` in `region` on every endpoint of the lab's zone: `down` for the
/// addresses in `down`, `up` for the others.
pub fn report(prober: &str, region: &str, boot: &str, sequence: u64, down: &[&str]) -> ProbeReport {
    let endpoints = BACKENDS
        .iter()
        .map(|(name, _, ip)| {
            let service = name.split('_').next().unwrap();
            let state = if down.contains(ip) {
                VoteState::Down
            } else {
                VoteState::Up
            };
            (
                EndpointKey::new(ZONE, service, ip.parse().unwrap()).unwrap(),
                EndpointReport {
                    state,
                    consecutive: 2,
                    latency_us: Some(100),
                    checked_at_ms: Some(unix_ms(SystemTime::now())),
                    reason: match state {
                        VoteState::Up => "ok".into(),
                        _ => "connect refused".into(),
                    },
                    load: None,
                    weight: None,
                },
            )
        })
        .collect();
    ProbeReport {
        prober_id: ProberId::new(prober),
        region: region.into(),
        boot_id: boot.into(),
        sequence,
        sent_at_ms: unix_ms(SystemTime::now()),
        interval_ms: 1000,
        config_digest: "test".into(),
        endpoints,
    }
}

/// POSTs `body` to `/v1/reports` with `key_id` and `signature` headers.
pub fn post_report(ns: &Meridian, key_id: &str, signature: &str, body: &[u8]) -> HttpResponse {
    http_request(
        ns.api,
        "POST",
        "/v1/reports",
        &[
            ("Content-Type", "application/json"),
            (KEY_ID_HEADER, key_id),
            (SIGNATURE_HEADER, signature),
        ],
        body,
    )
}

/// POSTs `body` signed with `key`.
pub fn post_signed(ns: &Meridian, key: &Key, body: &[u8]) -> HttpResponse {
    post_report(ns, key.id(), &sign(body, key), body)
}

/// `GET /v1/status`, parsed.
pub fn status(ns: &Meridian) -> serde_json::Value {
    let r = ns.get("/v1/status");
    assert_eq!(r.status, 200, "/v1/status: {}", r.body);
    r.json()
}

/// `GET /v1/status` of a server with thousands of endpoints (megabytes of JSON, seconds to
/// render in a debug build on a loaded machine), parsed.
pub fn big_status(ns: &Meridian) -> serde_json::Value {
    let r = crate::harness::http::http_request_within(
        ns.api,
        "GET",
        "/v1/status",
        &[],
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 200, "/v1/status: {}", r.body);
    r.json()
}

/// The `/v1/status` entry of one endpoint.
pub fn endpoint_status(st: &serde_json::Value, service: &str, address: &str) -> serde_json::Value {
    for svc in st["services"].as_array().unwrap() {
        if svc["service"] != service {
            continue;
        }
        for region in svc["regions"].as_array().unwrap() {
            for e in region["endpoints"].as_array().unwrap() {
                if e["address"] == address {
                    return e.clone();
                }
            }
        }
    }
    panic!("{service}/{address} not in /v1/status: {st:#}");
}

/// A prober's fresh vote (`up`, `down`, `unknown`) in an endpoint's `/v1/status` entry.
pub fn fresh_vote(endpoint: &serde_json::Value, prober: &str) -> Option<String> {
    endpoint["votes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["prober_id"] == prober && v["fresh"] == true)
        .map(|v| v["state"].as_str().unwrap().to_string())
}

/// Waits until `ns` has a fresh `up` vote from each of `probers` on every endpoint; on
/// timeout the panic shows every vote with its reason.
pub fn wait_all_up(ns: &Meridian, probers: &[&str], limit: Duration) {
    let start = Instant::now();
    loop {
        let st = status(ns);
        let mut missing = Vec::new();
        for (name, _, ip) in BACKENDS {
            let service = name.split('_').next().unwrap();
            let e = endpoint_status(&st, service, ip);
            for p in probers {
                if fresh_vote(&e, p).as_deref() != Some("up") {
                    missing.push(format!("{service}/{ip} {p}: {}", e["votes"]));
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "not every vote up within {limit:?}:\n{}",
            missing.join("\n")
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A port nothing listens on at any of the lab's addresses (bound once, then closed).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `prober`'s latest vote (fresh or not) in an endpoint's `/v1/status` entry, as JSON.
pub fn vote_of(endpoint: &serde_json::Value, prober: &str) -> Option<serde_json::Value> {
    endpoint["votes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["prober_id"] == prober)
        .cloned()
}

/// A prober `p1` of many endpoints: a directory with `zones/gslb.toml` (one region `r1`,
/// `services` services `service-0000`, ... of `per_service` endpoints `10.0.S.E` each, every
/// one checked by TCP at one closed port of 127.0.0.1 through `probe_address`, so the prober
/// reports them all down at the cost of one check per interval) and `keys.txt` with p1's key.
pub struct ManyEndpoints {
    /// The zones directory.
    pub zones: PathBuf,
    /// The key file (also the nameservers' `--keys`).
    pub keys: PathBuf,
    services: usize,
    per_service: usize,
    _dir: tempfile::TempDir,
}

impl ManyEndpoints {
    /// Writes the zone and the key file.
    pub fn new(services: usize, per_service: usize) -> Self {
        use std::fmt::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let zones = dir.path().join("zones");
        std::fs::create_dir(&zones).unwrap();
        let port = closed_port();
        let mut text = format!(
            "origin = \"gslb.example-company.com.\"\nns = [\"ns1.gslb.example-company.com.\"]\n\
             [soa]\nmname = \"ns1.gslb.example-company.com.\"\n\
             rname = \"admin.example-company.com.\"\nserial = 1\n[[record]]\nname = \"ns1\"\n\
             type = \"A\"\ndata = [\"192.0.2.53\"]\n[region.r1]\n[check.c]\ntype = \"tcp\"\n\
             port = {port}\ninterval = 1\ntimeout = \"500ms\"\nrise = 1\nfall = 1\n"
        );
        for s in 0..services {
            let _ = write!(text, "[service.service-{s:04}]\ncheck = \"c\"\n");
            for e in 0..per_service {
                let _ = write!(
                    text,
                    "[[service.service-{s:04}.endpoint]]\nregion=\"r1\"\naddress=\"10.0.{s}.{}\"\n\
                     probe_address=\"127.0.0.1\"\n",
                    e + 1
                );
            }
        }
        std::fs::write(zones.join("gslb.toml"), text).unwrap();
        let keys = dir.path().join("keys.txt");
        std::fs::write(&keys, format!("p1-k1 p1 {}\n", "5a".repeat(32))).unwrap();
        ManyEndpoints {
            zones,
            keys,
            services,
            per_service,
            _dir: dir,
        }
    }

    /// Starts `meridian probe` as p1 in r1 on the zones, publishing to `urls`, with `extra`
    /// arguments; its ready line must count every endpoint.
    pub fn prober(&self, urls: &[String], extra: &[String]) -> Process {
        let mut args = probe_args(&self.zones, "r1", "p1", &self.keys, urls);
        args.extend_from_slice(extra);
        let p = Process::meridian("prober p1", &args);
        let want = format!("endpoints={}", self.services * self.per_service);
        let ready = p.ready.as_deref().unwrap_or_default();
        assert!(ready.contains(&want), "ready line {ready:?}");
        p
    }

    /// Waits up to `limit` until `ns` holds p1's fresh vote `down` on the last endpoint: every
    /// endpoint's vote came through.
    pub fn wait_last_voted_down(&self, ns: &Meridian, limit: Duration) {
        let (s, e) = (self.services - 1, self.per_service);
        let (service, address) = (format!("service-{s:04}"), format!("10.0.{s}.{e}"));
        wait_until(limit, "the last endpoint voted down", || {
            let st = big_status(ns);
            fresh_vote(&endpoint_status(&st, &service, &address), "p1").as_deref() == Some("down")
        });
    }
}
