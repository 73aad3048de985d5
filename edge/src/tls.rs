//! `[tls]`: the certificate chain and key for `tls:` SIP listen addresses, and the
//! trust anchors for the TLS connections the edge opens itself (`sips:` targets),
//! loaded with rustls (aws-lc-rs provider). Errors name the file and what is wrong
//! with it; the key's contents are never logged.

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
    #[error("[tls] ca {}: {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
    #[error("[cluster] nats_cert {} / nats_key {}: {reason}", cert.display(), key.display())]
    NatsIdentity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("[tls] the system's trust store holds no usable certificate ({reason}); set [tls] ca")]
    NoRoots { reason: String },
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

fn certs(
    path: &Path,
    bad: impl Fn(String) -> TlsError,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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
    let chain = certs(&c.cert, |reason| TlsError::Cert {
        path: c.cert.clone(),
        reason,
    })?;
    let key = key(&c.key)?;
    let pair = |reason: String| TlsError::Pair {
        cert: c.cert.clone(),
        key: c.key.clone(),
        reason,
    };
    let provider = provider();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| pair(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The client side, for connections the edge opens to `sips:` / `;transport=tls`
/// targets (and chat relays to other nodes): the peer's certificate must chain
/// to the trust anchors ([`roots_or_warn`]: `[tls] ca` or, unset, the system's
/// trust store) and name the target's IP address (targets are IP addresses; no
/// DNS). No client certificate is presented.
pub fn client_config_with(
    roots: Arc<rustls::RootCertStore>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let config = client_builder(provider())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration on `provider` with the safe default TLS versions,
/// its verifier still to choose.
fn client_builder(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, TlsError> {
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::NoRoots {
            reason: e.to_string(),
        })
}

/// [`client_config_with`] whose refusals of a server's certificate are logged:
/// a warning naming `what`, the server and rustls's reason (each distinct one
/// once a minute, [`crate::throttle`]). For clients that report a refused certificate only as an
/// "IO error" (the NATS client).
pub fn client_config_reporting(
    roots: Arc<rustls::RootCertStore>,
    what: &'static str,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::NoRoots {
                reason: e.to_string(),
            })?;
    let builder = client_builder(provider)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Reporting { inner, what }));
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key_path)) => {
            let bad = |reason: String| TlsError::NatsIdentity {
                cert: cert.to_path_buf(),
                key: key_path.to_path_buf(),
                reason,
            };
            let chain = certs(cert, bad)?;
            // The key's own errors name its file and never its contents.
            let key = key(key_path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// The standard verifier, saying why it refused a certificate.
#[derive(Debug)]
struct Reporting {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    what: &'static str,
}

impl rustls::client::danger::ServerCertVerifier for Reporting {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let r = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        if let Err(e) = &r {
            let key = format!("{} {}: {e}", self.what, server_name.to_str());
            if crate::throttle::warn_now(&key) {
                tracing::warn!(server = %server_name.to_str(), error = %e, "{}: certificate refused", self.what);
            }
        }
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The trust anchors: `[tls] ca`, else the system's trust store.
fn roots(c: &control::TlsConfig) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &c.ca {
        Some(path) => {
            let bad = |reason: String| TlsError::Ca {
                path: path.clone(),
                reason,
            };
            for cert in certs(path, bad)? {
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let reason = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none found".into());
                return Err(TlsError::NoRoots { reason });
            }
        }
    }
    Ok(roots)
}

/// [`client_config_with`] on `[tls]`'s trust anchors, where an empty system
/// trust store only leaves these connections unavailable (`None`, warned once with `unavailable`); any other
/// error (a bad `[tls] ca`) is returned: it stops the edge.
pub fn client_config_or_warn(
    c: &control::TlsConfig,
    unavailable: &str,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    roots_or_warn(c, unavailable)?
        .map(client_config_with)
        .transpose()
}

/// The trust anchors ([`roots`]), read once for several client configurations;
/// an empty system trust store is `None` (warned once with `unavailable`), a
/// bad `[tls] ca` an error: it stops the edge.
pub fn roots_or_warn(
    c: &control::TlsConfig,
    unavailable: &str,
) -> Result<Option<Arc<rustls::RootCertStore>>, TlsError> {
    match roots(c) {
        Ok(r) => Ok(Some(Arc::new(r))),
        Err(e @ TlsError::NoRoots { .. }) => {
            tracing::warn!(error = %e, "{unavailable}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
