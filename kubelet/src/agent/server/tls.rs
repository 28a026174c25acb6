//! The serving TLS configuration: the kubelet's certificate and key, and the cluster CA
//! that client certificates must chain to. A client without a certificate still completes
//! the handshake, so it can be answered 401 as upstream's kubelet answers; one with a
//! certificate from another CA does not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{what} in PEM: {message}")]
    Pem { what: &'static str, message: String },
    #[error("the client CA: {0}")]
    Ca(String),
    #[error("the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the PEM files are (the integrator's flags: `--tls-cert-file`,
/// `--tls-private-key-file`, `--client-ca-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

impl TlsFiles {
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        server_config(&read(&self.cert)?, &read(&self.key)?, &read(&self.client_ca)?)
    }
}

fn certs(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| TlsError::Pem { what, message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { what, message: "no CERTIFICATE block".into() });
    }
    Ok(certs)
}

/// From PEM: the serving chain, its key (PKCS#8, PKCS#1 or SEC1) and the client CA bundle.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs("the serving certificate", cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem { what: "the serving key", message: e.to_string() })?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs("the client CA", ca_pem)? {
        roots.add(ca).map_err(|e| TlsError::Ca(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_client_cert_verifier(verifier).with_single_cert(chain, key)?;
    // Upgrades (exec, attach, port-forward) exist only in HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
