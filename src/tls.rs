//! Reading a TLS certificate chain and private key from PEM files: the one loader the HTTP
//! API (`api::tls`) and the DNS listeners (`dns::encrypted`) share. A leaf module (no other
//! module of the crate), so both can use it without importing each other.
//!
//! Owns: PEM parsing and its errors (naming the file). Must never: be called on the query path.

use std::path::{Path, PathBuf};

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS certificate and key could not be loaded.
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

/// Reads a PEM certificate chain (at least one certificate) and a PEM private key (PKCS#8,
/// PKCS#1 or SEC1).
#[allow(clippy::type_complexity)]
pub fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
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
    Ok((certs, key_der))
}
