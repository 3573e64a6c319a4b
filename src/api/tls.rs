//! Serving the HTTP API with connection limits, over plain TCP or TLS (rustls).
//!
//! The API faces probers and operators, possibly across the internet, so it gets the same
//! care as DNS over TCP: a cap on open connections, a deadline for the TLS handshake and for
//! each request's headers (so a slow-loris client cannot hold a slot forever), and idle
//! connections closed gracefully after [`API_CONNECTION_LIFETIME`]. Body sizes are capped per route
//! in `api::router`.
//!
//! Owns: the accept loop, TLS configuration loading, per-connection deadlines. Must never:
//! block the runtime (certificate files are read once at start-up), or serve a request
//! without the router's limits.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Most API connections open at once; further ones are closed at accept.
pub const MAX_API_CONNECTIONS: usize = 256;
/// Time allowed for a TLS handshake.
pub const API_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to send a request's headers.
pub const API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed (gracefully, after its request in flight) this long after accept.
pub const API_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Why the API's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{}: {message}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("{}: {source}", cert.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// rustls's reason.
        source: tokio_rustls::rustls::Error,
    },
}

/// Builds a TLS server configuration (TLS 1.2 and 1.3, ring, HTTP/1.1 via ALPN) from a PEM
/// certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_err = |path: &Path, message: String| TlsError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(cert, "no CERTIFICATE block found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|source| TlsError::Config {
            cert: cert.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` on `listener`, over TLS when `tls` is given, until the process ends.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
) -> io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(MAX_API_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "api accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "api connection refused: limit reached");
            continue;
        };
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match acceptor {
                None => serve_connection(stream, router).await,
                Some(acceptor) => {
                    match tokio::time::timeout(API_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => serve_connection(tls, router).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "api tls handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "api tls handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection<S>(stream: S, router: Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(API_HEADER_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    // The header timeout covers a client that starts a request and stalls; the lifetime
    // bounds a keep-alive connection that is reused forever or left open and silent.
    tokio::pin!(conn);
    let mut deadline = Box::pin(tokio::time::sleep(API_CONNECTION_LIFETIME));
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "api connection ended");
            }
        }
        () = &mut deadline => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(API_HEADER_TIMEOUT, conn).await;
        }
    }
}
