//! The cluster CA as the signer of approved CertificateSigningRequests (upstream's
//! csrsigning controller with --cluster-signing-cert-file/--cluster-signing-key-file): a
//! certificate for the request's public key and subject, with the usages the CSR's
//! `spec.usages` name, valid for a year or the requested shorter time.

use rcgen::{CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber};
use time::{Duration, OffsetDateTime};

/// Certificates live a year unless the request asks for less (kube-controller-manager's
/// --cluster-signing-duration default).
pub const DEFAULT_LIFETIME: Duration = Duration::days(365);
/// The shortest `spec.expirationSeconds` honoured (upstream's minimum, 10 minutes).
pub const MIN_LIFETIME: Duration = Duration::minutes(10);
/// Clock skew between the signer and whoever checks the certificate (upstream: 5 minutes).
const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("the cluster signing CA: {0}")]
    Ca(String),
    #[error("the certificate request: {0}")]
    Request(String),
    #[error("usage {0:?} is not one this signer issues")]
    Usage(String),
    #[error("signing the certificate: {0}")]
    Sign(String),
}

/// The CA certificate and key (PEM).
#[derive(Clone)]
pub struct ClusterSigner {
    ca_cert_pem: String,
    ca_key_pem: String,
}

impl std::fmt::Debug for ClusterSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ClusterSigner").finish_non_exhaustive()
    }
}

impl ClusterSigner {
    /// Checked once here, so signing later fails only on bad requests.
    pub fn new(ca_cert_pem: &str, ca_key_pem: &str) -> Result<ClusterSigner, SignerError> {
        let key = KeyPair::from_pem(ca_key_pem).map_err(|e| SignerError::Ca(format!("the key does not parse: {e}")))?;
        Issuer::from_ca_cert_pem(ca_cert_pem, &key).map_err(|e| SignerError::Ca(format!("the certificate does not parse: {e}")))?;
        Ok(ClusterSigner { ca_cert_pem: ca_cert_pem.to_string(), ca_key_pem: ca_key_pem.to_string() })
    }

    pub fn from_pki(pki: &super::Pki) -> Result<ClusterSigner, SignerError> {
        ClusterSigner::new(pki.ca_cert_pem(), &pki.ca_key_pem())
    }

    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// A certificate (PEM) for the request `csr_der` with `usages` (the CSR's spec.usages
    /// words), valid from now for `expiration_seconds` (None: a year; capped at a year,
    /// at least 10 minutes, and never past the CA's own expiry).
    pub fn sign(&self, csr_der: &[u8], usages: &[String], expiration_seconds: Option<i64>, now: OffsetDateTime) -> Result<String, SignerError> {
        let mut request = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into()).map_err(|e| SignerError::Request(e.to_string()))?;
        let params = &mut request.params;
        // The signer decides usages and lifetime, not the request's extensions.
        params.key_usages.clear();
        params.extended_key_usages.clear();
        for usage in usages {
            match usage.as_str() {
                "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "client auth" => params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth),
                other => return Err(SignerError::Usage(other.to_string())),
            }
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| SignerError::Sign(format!("no random serial number: {e}")))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let lifetime = expiration_seconds.map(Duration::seconds).map_or(DEFAULT_LIFETIME, |d| d.clamp(MIN_LIFETIME, DEFAULT_LIFETIME));
        let key = KeyPair::from_pem(&self.ca_key_pem).map_err(|e| SignerError::Ca(e.to_string()))?;
        let ca_not_after = {
            let (_, block) = x509_parser::pem::parse_x509_pem(self.ca_cert_pem.as_bytes()).map_err(|e| SignerError::Ca(e.to_string()))?;
            let cert = block.parse_x509().map_err(|e| SignerError::Ca(e.to_string()))?;
            cert.validity().not_after.to_datetime()
        };
        params.not_before = now - BACKDATE;
        params.not_after = (now + lifetime).min(ca_not_after);
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, &key).map_err(|e| SignerError::Ca(e.to_string()))?;
        let cert = request.signed_by(&issuer).map_err(|e| SignerError::Sign(e.to_string()))?;
        Ok(cert.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::csr;

    fn signer() -> (tempfile::TempDir, ClusterSigner) {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::auth::Pki::load_or_create(dir.path(), &[]).unwrap();
        let s = ClusterSigner::from_pki(&pki).unwrap();
        (dir, s)
    }

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
    }

    #[test]
    fn the_certificate_chains_to_the_ca_with_the_requests_key_and_subject() {
        let (_d, s) = signer();
        let (request, key_pem) = csr::make_request("system:node:w1", &["system:nodes"], &[]);
        let now = OffsetDateTime::now_utc();
        let usages = vec!["digital signature".to_string(), "key encipherment".to_string(), "client auth".to_string()];
        let pem = s.sign(&der(&request), &usages, None, now).unwrap();
        let cert_der = der(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
        let ca_der = der(s.ca_cert_pem());
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).expect("signed by the CA");
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
        let key = KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw());
        let (cn, orgs) = crate::auth::pki::subject_names(&cert);
        assert_eq!((cn.as_deref(), orgs), (Some("system:node:w1"), vec!["system:nodes".to_string()]));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!cert.is_ca());
        let life = cert.validity().not_after.timestamp() - now.unix_timestamp();
        assert!((364 * 86400..=365 * 86400).contains(&life), "{life}");
        // The authenticator reads it as the node.
        let user = crate::auth::Authenticator::authenticate_cert(&cert_der).unwrap();
        assert_eq!(user.name, "system:node:w1");
    }

    #[test]
    fn lifetime_follows_expiration_seconds_within_bounds_and_usages_are_checked() {
        let (_d, s) = signer();
        let (request, _) = csr::make_request("system:node:w1", &["system:nodes"], &["10.0.0.5"]);
        let now = OffsetDateTime::now_utc();
        let serving = vec!["digital signature".to_string(), "server auth".to_string()];
        for (asked, expected) in [(Some(3600), 3600), (Some(60), 600), (Some(10 * 365 * 86400), 365 * 86400)] {
            let pem = s.sign(&der(&request), &serving, asked, now).unwrap();
            let d = der(&pem);
            let (_, cert) = x509_parser::parse_x509_certificate(&d).unwrap();
            assert_eq!(cert.validity().not_after.timestamp() - now.unix_timestamp(), expected, "{asked:?}");
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && !eku.client_auth);
            let san = cert.subject_alternative_name().unwrap().unwrap().value;
            assert_eq!(san.general_names.len(), 1);
        }
        assert!(matches!(s.sign(&der(&request), &["code signing".to_string()], None, now), Err(SignerError::Usage(u)) if u == "code signing"));
        assert!(matches!(s.sign(b"junk", &serving, None, now), Err(SignerError::Request(_))));
    }
}
