//! `[tls]`: the certificate chain and key for `tls:` SIP listen addresses, loaded
//! with rustls (aws-lc-rs provider). Errors name the file and what is wrong with it;
//! the key's contents are never logged.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[tls] cert {}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("[tls] key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("[tls] cert {} with key {}: {reason}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not PEM ({other:?})"),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Cert {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_reason(e)))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE block in it".into()));
    }
    Ok(chain)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY block in it (PKCS#8, PKCS#1 or SEC1)".into()
            }
            other => pem_reason(other),
        },
    })
}

/// The server side of `tls:` listen addresses: TLS 1.2 and 1.3, no client
/// certificates (phones and trunks authenticate with digest or by source address).
pub fn server_config(c: &control::TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs(&c.cert)?;
    let key = key(&c.key)?;
    let pair = |reason: String| TlsError::Pair {
        cert: c.cert.clone(),
        key: c.key.clone(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| pair(e.to_string()))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
