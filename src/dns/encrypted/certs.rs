//! The certificate of the encrypted listeners, swappable at run time.
//!
//! [`CertStore`] holds the current certificate chain and key behind an `ArcSwap`; every TLS
//! configuration the listeners build resolves through it, so a reload (SIGHUP, `meridian ctl
//! reload`, `POST /v1/reload`) changes the certificate of new handshakes on DoT, DoH and DoQ at
//! once, and connections already open keep theirs. A file that does not load (unreadable, no
//! certificate, a key that does not match) leaves the previous certificate serving; the error
//! goes to the reload report and `meridian_tls_certificate_reloads_total{result="error"}`.
//!
//! Owns: reading `--tls-cert`/`--tls-key` (through `tls::load_pem`, the API's loader too) and
//! the rustls server configurations with each transport's ALPN. Must never: replace a serving
//! certificate with one that did not load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::tls::{TlsError, load_pem};

/// The certificate the encrypted listeners present, and where it is read from.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// Reads `cert` (PEM chain) and `key` (PEM private key); an error names the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(default_provider());
        let current = read(cert, key, &provider)?;
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(current),
        }))
    }

    /// Reads the files again; on success new handshakes use the new certificate, on error
    /// the current one keeps serving and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let next = read(&self.cert, &self.key, &self.provider)?;
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// The certificate chain serving now (DER), leaf first.
    pub fn chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.current.load().cert.clone()
    }

    /// A server configuration presenting this store's certificate, offering `alpn`. With
    /// `tls13_only` (QUIC, RFC 9001 §4.2) only TLS 1.3 is offered; else TLS 1.2 and 1.3
    /// (RFC 7858 §3.2 asks for TLS 1.2 at least; RFC 8484 §5.2 follows HTTP/2's rules).
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        tls13_only: bool,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let builder = ServerConfig::builder_with_provider(Arc::clone(&self.provider));
        let builder = if tls13_only {
            builder.with_protocol_versions(&[&rustls::version::TLS13])?
        } else {
            builder.with_safe_default_protocol_versions()?
        };
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads and checks a certificate/key pair: the key must parse and match the leaf.
fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let (chain, key_der) = load_pem(cert, key)?;
    CertifiedKey::from_der(chain, key_der, provider).map_err(|source| TlsError::Config {
        cert: cert.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, host: &str) -> (PathBuf, PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn reload_takes_a_good_pair_and_keeps_the_old_one_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a", "a.test");
        let store = CertStore::load(&cert, &key).unwrap();
        let first = store.chain();

        // A key that does not belong to the certificate: rejected, old pair kept.
        let (_, other_key) = write_pair(dir.path(), "b", "b.test");
        std::fs::copy(&other_key, &key).unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains("a.pem"), "{err}");
        assert_eq!(store.chain(), first);

        // Garbage in the certificate file: rejected, naming the file.
        std::fs::write(&cert, "not a certificate").unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains("a.pem"), "{err}");
        assert_eq!(store.chain(), first);

        // A good new pair: taken.
        let (c, k) = write_pair(dir.path(), "c", "c.test");
        std::fs::copy(&c, &cert).unwrap();
        std::fs::copy(&k, &key).unwrap();
        store.reload().unwrap();
        assert_ne!(store.chain(), first);
    }

    #[test]
    fn configs_carry_each_transports_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a", "a.test");
        let store = CertStore::load(&cert, &key).unwrap();
        let quic = store.server_config(&[b"doq"], true).unwrap();
        assert_eq!(quic.alpn_protocols, vec![b"doq".to_vec()]);
        let doh = store.server_config(&[b"h2", b"http/1.1"], false).unwrap();
        assert_eq!(doh.alpn_protocols.len(), 2);
    }
}
