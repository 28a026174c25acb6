//! The API server's TLS configuration: its serving certificate, ALPN `h2` and `http/1.1`
//! (kubectl and client-go prefer HTTP/2), and client certificates that are optional but,
//! when presented, must chain to the cluster CA: an unknown certificate fails the
//! handshake rather than reaching the authenticator.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::pki::{self, Pki, PkiError};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("serving key in {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("trust the cluster CA for client certificates: {0}")]
    ClientRoots(String),
    #[error("build the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The rustls provider is chosen explicitly: the process-wide default is ambiguous once
/// another crate in the binary enables a second provider.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let ca = CertificateDer::from(pki::cert_der("ca.crt", pki.ca_cert_pem())?);
    let verifier = client_verifier(ca.clone())?;
    let serving = CertificateDer::from(pki::cert_der("apiserver.crt", pki.serving_cert_pem())?);
    let key = serving_key(pki)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        // The CA goes along so clients that only trust it can build the chain.
        .with_single_cert(vec![serving, ca], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Optional client certificates, verified against the cluster CA when presented.
fn client_verifier(ca: CertificateDer<'static>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| TlsError::ClientRoots(e.to_string()))?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientRoots(e.to_string()))
}

fn serving_key(pki: &Pki) -> Result<PrivateKeyDer<'static>, TlsError> {
    let path = pki.dir().join("apiserver.key").display().to_string();
    let key = rcgen::KeyPair::from_pem(pki.serving_key_pem()).map_err(|e| TlsError::Key {
        path,
        reason: e.to_string(),
    })?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_h2_then_http1_and_verifies_optional_client_certs() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let config = server_config(&pki).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let ca = CertificateDer::from(pki::cert_der("ca.crt", pki.ca_cert_pem()).unwrap());
        let verifier = client_verifier(ca).unwrap();
        assert!(verifier.offer_client_auth());
        assert!(!verifier.client_auth_mandatory());
        assert!(!verifier.root_hint_subjects().is_empty());
    }
}
