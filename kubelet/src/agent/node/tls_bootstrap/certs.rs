//! The node's keys and certificate requests (ECDSA P-256, subject CN=system:node:NAME,
//! O=system:nodes, as the kubelet's), and what a certificate we hold says about itself.

use std::net::IpAddr;

use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::BootstrapError;

/// The group every node's certificate names as its organization.
pub const NODES_GROUP: &str = "system:nodes";

/// The user a node's certificate names as its common name.
pub fn node_user(node: &str) -> String {
    format!("system:node:{node}")
}

/// A new private key and a certificate request for `node`, naming `ips` and `dns` as
/// subject alternative names (a serving certificate's; none for a client certificate).
pub struct KeyAndRequest {
    /// The request, PEM (`CERTIFICATE REQUEST`).
    pub csr_pem: String,
    /// The key, PEM (PKCS#8).
    pub key_pem: String,
}

pub fn new_request(node: &str, ips: &[IpAddr], dns: &[String]) -> Result<KeyAndRequest, BootstrapError> {
    let (csr_pem, key_pem) = apiserver_lite::auth::csr::new_request(&node_user(node), &[NODES_GROUP], ips, dns)
        .map_err(|e| BootstrapError::Request { node: node.to_string(), message: e.to_string() })?;
    Ok(KeyAndRequest { csr_pem, key_pem })
}

/// What we check of a certificate we hold: until when it is valid, the IP addresses it
/// names, its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Seconds since the epoch.
    pub not_after: i64,
    pub ips: Vec<IpAddr>,
    /// The SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

impl CertFacts {
    pub fn expired(&self, now: i64) -> bool {
        self.not_after <= now
    }

    /// Whether `key_pem` is the private key of this certificate (a crash between writing a
    /// new key and its certificate must not leave a pair that does not match).
    pub fn matches_key(&self, key_pem: &str) -> bool {
        use rcgen::PublicKeyData;
        rcgen::KeyPair::from_pem(key_pem).is_ok_and(|key| key.subject_public_key_info() == self.spki)
    }
}

/// The facts of the first certificate in `pem`; `Err` names what is wrong with it.
pub fn cert_facts(pem: &[u8]) -> Result<CertFacts, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!("a {} PEM block, not a CERTIFICATE", block.label));
    }
    let (_, cert) = X509Certificate::from_der(&block.contents).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut ips = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::IPAddress(bytes) = name {
                    match bytes.len() {
                        4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes"))),
                        16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes"))),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(CertFacts { not_after: cert.validity().not_after.timestamp(), ips, spki: cert.public_key().raw.to_vec() })
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::certification_request::X509CertificationRequest;

    #[test]
    fn a_client_request_names_the_node_and_its_group_and_the_key_is_pkcs8_p256() {
        let req = new_request("worker-1", &[], &[]).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(req.csr_pem.as_bytes()).unwrap();
        assert_eq!(block.label, "CERTIFICATE REQUEST");
        let (_, csr) = X509CertificationRequest::from_der(&block.contents).unwrap();
        csr.verify_signature().unwrap();
        let subject = csr.certification_request_info.subject.to_string();
        assert_eq!(subject, "CN=system:node:worker-1, O=system:nodes");
        assert!(csr.requested_extensions().is_none_or(|mut e| !e.any(|x| matches!(x, ParsedExtension::SubjectAlternativeName(_)))));
        assert!(req.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", req.key_pem);
        assert!(rcgen::KeyPair::from_pem(&req.key_pem).unwrap().is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256));
    }

    #[test]
    fn a_serving_request_names_the_node_ip_and_name() {
        let req = new_request("worker-1", &["10.0.0.7".parse().unwrap()], &["worker-1".into()]).unwrap();
        let (_, sans) = super::super::tests::parse_request_pem(req.csr_pem.as_bytes());
        assert_eq!(sans, ["DNSName(worker-1)", "IPAddress(0a:00:00:07)"], "{sans:?}");
    }

    #[test]
    fn facts_of_a_certificate_and_of_garbage() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["n".to_string()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress("10.1.2.3".parse().unwrap()));
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let facts = cert_facts(cert.pem().as_bytes()).unwrap();
        assert_eq!(facts.ips, vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert!(!facts.expired(1_800_000_000));
        assert!(facts.expired(1_900_000_000));
        assert!(facts.matches_key(&key.serialize_pem()));
        assert!(!facts.matches_key(&rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem()));
        assert!(!facts.matches_key("garbage"));
        assert!(cert_facts(b"nonsense").is_err());
        assert!(cert_facts(key.serialize_pem().as_bytes()).unwrap_err().contains("PRIVATE KEY"));
    }
}
