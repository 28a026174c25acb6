//! PKCS#10 certificate signing requests as a CertificateSigningRequest's `spec.request`
//! carries them (PEM `CERTIFICATE REQUEST`): what the API server validates on create and
//! what the approving and signing controller reads (subject, names, signature).

use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotPem,
    #[error("PEM block type must be CERTIFICATE REQUEST, not {0}")]
    WrongPemType(String),
    #[error("the certificate request does not parse: {0}")]
    Parse(String),
    #[error("the certificate request's signature does not verify with its own public key")]
    Signature,
    #[error("the certificate request has a subject alternative name that cannot be read")]
    Names,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCsr {
    /// The DER of the whole request (the signer parses it again).
    pub der: Vec<u8>,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

impl ParsedCsr {
    pub fn has_sans(&self) -> bool {
        !(self.dns_names.is_empty() && self.ip_addresses.is_empty() && self.emails.is_empty() && self.uris.is_empty())
    }
}

/// Parse a PEM `CERTIFICATE REQUEST` and check its self-signature (proof the requester holds
/// the key).
pub fn parse_pem(pem: &[u8]) -> Result<ParsedCsr, CsrError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| CsrError::NotPem)?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(CsrError::WrongPemType(block.label));
    }
    parse_der(&block.contents)
}

pub fn parse_der(der: &[u8]) -> Result<ParsedCsr, CsrError> {
    let (_, csr) = X509CertificationRequest::from_der(der).map_err(|e| CsrError::Parse(e.to_string()))?;
    csr.verify_signature().map_err(|_| CsrError::Signature)?;
    let subject = &csr.certification_request_info.subject;
    let common_name = subject.iter_common_name().find_map(|a| a.as_str().ok()).map(str::to_string);
    let organizations = subject.iter_organization().filter_map(|a| a.as_str().ok()).map(str::to_string).collect();
    let mut parsed = ParsedCsr { der: der.to_vec(), common_name, organizations, dns_names: Vec::new(), ip_addresses: Vec::new(), emails: Vec::new(), uris: Vec::new() };
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else { continue };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => parsed.dns_names.push(d.to_string()),
                GeneralName::RFC822Name(e) => parsed.emails.push(e.to_string()),
                GeneralName::URI(u) => parsed.uris.push(u.to_string()),
                GeneralName::IPAddress(bytes) => parsed.ip_addresses.push(ip_from_bytes(bytes).ok_or(CsrError::Names)?),
                _ => return Err(CsrError::Names),
            }
        }
    }
    Ok(parsed)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// A certificate request (PEM) for `cn` in `orgs`, naming `ips` and `dns`, signed by a new
/// ECDSA P-256 key; with the key (PKCS#8 PEM). A joining node's requests are made with it.
pub fn new_request(cn: &str, orgs: &[&str], ips: &[IpAddr], dns: &[String]) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(dns.to_vec())?;
    params.subject_alt_names.extend(ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    for (i, o) in orgs.iter().enumerate() {
        // One value per attribute type in rcgen: later organizations under the raw OID.
        let ty = if i == 0 { rcgen::DnType::OrganizationName } else { rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]) };
        params.distinguished_name.push(ty, *o);
    }
    Ok((params.serialize_request(&key)?.pem()?, key.serialize_pem()))
}

/// [`new_request`] for tests and tools: `sans` are IP addresses or DNS names; panics on a
/// name rcgen refuses.
pub fn make_request(cn: &str, orgs: &[&str], sans: &[&str]) -> (String, String) {
    let ips: Vec<IpAddr> = sans.iter().filter_map(|s| s.parse().ok()).collect();
    let dns: Vec<String> = sans.iter().filter(|s| s.parse::<IpAddr>().is_err()).map(|s| s.to_string()).collect();
    new_request(cn, orgs, &ips, &dns).expect("a request for valid names")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subject_and_names() {
        let (pem, _) = make_request("system:node:w1", &["system:nodes"], &["10.0.0.5", "w1.example"]);
        let csr = parse_pem(pem.as_bytes()).unwrap();
        assert_eq!(csr.common_name.as_deref(), Some("system:node:w1"));
        assert_eq!(csr.organizations, vec!["system:nodes"]);
        assert_eq!(csr.ip_addresses, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(csr.dns_names, vec!["w1.example"]);
        assert!(csr.has_sans());
        let (two, _) = make_request("x", &["a", "b"], &[]);
        assert_eq!(parse_pem(two.as_bytes()).unwrap().organizations, vec!["a", "b"]);
    }

    #[test]
    fn refuses_what_is_not_a_signed_request() {
        assert_eq!(parse_pem(b"hello"), Err(CsrError::NotPem));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(parse_pem(cert.as_bytes()), Err(CsrError::WrongPemType("CERTIFICATE".into())));
        let junk = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        assert!(matches!(parse_pem(junk.as_bytes()), Err(CsrError::Parse(_))));
        // A flipped byte in the signed part breaks the self-signature.
        let (pem, _) = make_request("system:node:w1", &["system:nodes"], &[]);
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let mut der = block.contents.clone();
        let at = der.windows(2).position(|w| w == b"w1").unwrap();
        der[at] = b'x';
        assert_eq!(parse_der(&der), Err(CsrError::Signature));
    }
}
