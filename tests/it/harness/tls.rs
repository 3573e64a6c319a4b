//! Encrypted DNS as a client sees it: DoT (RFC 7858), DoH over HTTP/1.1 (RFC 8484) and DoQ
//! (RFC 9250) clients that verify the server against a test CA, and the certificates
//! themselves (rcgen): a CA, leaves for chosen names, expired ones.
//!
//! Owns: every encrypted exchange of the tests. Must never: send anywhere but loopback, or
//! wait without a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, date_time_ymd};
use rustls::pki_types::{CertificateDer, ServerName};

use super::NET_TIMEOUT;

/// The name the test certificates are issued for (besides 127.0.0.1).
pub const SERVER_NAME: &str = "ns.test";

/// A test CA and a directory for the certificates it issues.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate the test CA issued, as files for `--tls-cert`/`--tls-key`.
pub struct Issued {
    /// PEM chain (the leaf).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The leaf, DER.
    pub der: CertificateDer<'static>,
}

impl TestPki {
    /// A fresh CA.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Meridian test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        TestPki { dir, ca }
    }

    /// The CA certificate's PEM file (for `kdig +tls-ca=`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA certificate.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// The directory the certificates are written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a leaf for `names` (DNS names or IP addresses) as `stem.pem`/`stem.key`; an
    /// `expired` one was valid only in 2020.
    pub fn issue(&self, stem: &str, names: &[&str], expired: bool) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}.key")),
            der: cert.der().clone(),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

/// `["--tls-cert", CERT, "--tls-key", KEY]` for `issued`.
pub fn tls_args(issued: &Issued) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        issued.cert.display().to_string(),
        "--tls-key".into(),
        issued.key.display().to_string(),
    ]
}

/// A client configuration trusting only `ca`, offering `alpn`.
pub fn client_config(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A verified TLS connection to `addr` for [`SERVER_NAME`] (or `name`), the handshake done;
/// the error when the handshake fails.
pub fn tls_connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let tcp = TcpStream::connect_timeout(&addr, NET_TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(NET_TIMEOUT)).unwrap();
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, server_name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(stream)
}

/// The certificate the server presented on `stream`.
pub fn peer_leaf(
    stream: &rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> CertificateDer<'static> {
    stream.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One DoT exchange on an open connection: the reply's bytes.
pub fn dot_ask(
    stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    query: &[u8],
) -> Result<Vec<u8>, String> {
    stream
        .write_all(&super::frame(query))
        .map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut reply = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).map_err(|e| e.to_string())?;
    Ok(reply)
}

/// One query over a new DoT connection verified against `ca`.
pub fn dot_exchange(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    query: &[u8],
) -> Result<Vec<u8>, String> {
    let mut s = tls_connect(addr, SERVER_NAME, client_config(ca, &[b"dot"]))?;
    dot_ask(&mut s, query)
}

/// An HTTP response: status, lower-case headers, body.
#[derive(Debug)]
pub struct DohResponse {
    /// Status code.
    pub status: u16,
    /// `(name, value)` pairs, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl DohResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a new verified TLS connection to a DoH listener.
pub fn doh_request(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> DohResponse {
    let mut s = tls_connect(addr, SERVER_NAME, client_config(ca, &[b"http/1.1"])).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\nAccept: application/dns-message\r\n"
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).unwrap();
    let mut raw = Vec::new();
    // The server closes after the response (Connection: close); a missing close_notify is
    // an error rustls reports after the data, which is all here.
    let _ = s.read_to_end(&mut raw);
    parse_http(&raw)
}

fn parse_http(raw: &[u8]) -> DohResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    DohResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}

/// `query` as the `dns` parameter of a DoH GET (base64url without padding).
pub fn doh_get_target(query: &[u8]) -> String {
    format!(
        "/dns-query?dns={}",
        data_encoding::BASE64URL_NOPAD.encode(query)
    )
}

/// One query over a new DoQ connection verified against `ca`: the reply's bytes, or why not.
pub fn doq_exchange(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    query: &[u8],
) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(NET_TIMEOUT, doq_exchange_async(addr, ca, query))
            .await
            .map_err(|_| "doq exchange timed out".to_string())?
    })
}

async fn doq_exchange_async(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    query: &[u8],
) -> Result<Vec<u8>, String> {
    let mut tls = (*client_config(ca, &[b"doq"])).clone();
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
        .map_err(|e| e.to_string())?;
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(config);
    let conn = endpoint
        .connect(addr, SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(&super::frame(query))
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let data = recv
        .read_to_end(65_537)
        .await
        .map_err(|e| format!("{e:?}"))?;
    conn.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    let (len, reply) = data.split_at_checked(2).ok_or("short doq reply")?;
    assert_eq!(
        usize::from(u16::from_be_bytes([len[0], len[1]])),
        reply.len()
    );
    Ok(reply.to_vec())
}
