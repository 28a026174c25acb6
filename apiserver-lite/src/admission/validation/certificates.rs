//! CertificateSigningRequests (certificates.k8s.io/v1): a request that is a parseable,
//! self-signed PEM `CERTIFICATE REQUEST`, a signer name, known usages, a lifetime of at
//! least 10 minutes, consistent conditions, and an issued certificate that never changes.

use std::collections::BTreeSet;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::names::{self, NameRule};
use super::{FieldError, FieldErrorKind, Path, Raw};

/// Upstream's KeyUsage values.
pub const USAGES: &[&str] = &[
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only",
    "any", "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
];
const CONDITION_STATUSES: &[&str] = &["False", "True", "Unknown"];
const MIN_EXPIRATION_SECONDS: i32 = 600;

fn invalid(field: Path, message: impl Into<String>) -> FieldError {
    FieldError { field: field.as_str().to_string(), kind: FieldErrorKind::Invalid, value: None, message: message.into() }
}

pub(super) fn csr(csr: &CertificateSigningRequest, old: Option<&CertificateSigningRequest>, errs: &mut Vec<FieldError>) {
    names::object_meta(&csr.metadata, NameRule::Subdomain, errs);
    let spec = Path::new("spec");
    if let Err(e) = crate::auth::csr::parse_pem(&csr.spec.request.0) {
        errs.push(invalid(spec.child("request"), e.to_string()));
    }
    let signer = csr.spec.signer_name.as_str();
    if signer.is_empty() {
        errs.push(FieldError::required(spec.child("signerName"), ""));
    } else if !signer_name_ok(signer) {
        errs.push(FieldError::invalid(spec.child("signerName"), signer, "must be a fully qualified domain and path of the form 'example.com/signer-name'"));
    }
    let usages = csr.spec.usages.as_deref().unwrap_or_default();
    if usages.is_empty() {
        errs.push(FieldError::required(spec.child("usages"), "usages must be provided"));
    }
    let mut seen = BTreeSet::new();
    for (i, usage) in usages.iter().enumerate() {
        if !USAGES.contains(&usage.as_str()) {
            errs.push(FieldError::not_supported(spec.child("usages").index(i), usage, USAGES));
        } else if !seen.insert(usage) {
            errs.push(FieldError::duplicate(spec.child("usages").index(i), usage));
        }
    }
    if let Some(seconds) = csr.spec.expiration_seconds
        && seconds < MIN_EXPIRATION_SECONDS
    {
        errs.push(FieldError::invalid(spec.child("expirationSeconds"), seconds, "may not specify a duration less than 600 seconds (10 minutes)"));
    }
    let status = Path::new("status");
    let conditions = csr.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let mut types = BTreeSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let path = status.child("conditions").index(i);
        if c.type_.is_empty() {
            errs.push(FieldError::required(path.child("type"), ""));
        } else if !types.insert(c.type_.as_str()) && matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed") {
            errs.push(FieldError::duplicate(path.child("type"), &c.type_));
        }
        if !CONDITION_STATUSES.contains(&c.status.as_str()) {
            errs.push(FieldError::not_supported(path.child("status"), &c.status, CONDITION_STATUSES));
        }
    }
    if types.contains("Approved") && types.contains("Denied") {
        errs.push(invalid(status.child("conditions"), "Approved and Denied conditions are mutually exclusive"));
    }
    let certificate = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).map(|c| c.0.as_slice()).unwrap_or_default();
    let old_certificate = old.and_then(|o| o.status.as_ref()).and_then(|s| s.certificate.as_ref()).map(|c| c.0.as_slice()).unwrap_or_default();
    if !old_certificate.is_empty() && certificate != old_certificate {
        errs.push(FieldError::forbidden(status.child("certificate"), "updates may not modify existing certificate content"));
    } else if !certificate.is_empty() && certificate != old_certificate && !is_certificate_pem(certificate) {
        errs.push(FieldError::invalid(status.child("certificate"), Raw("<certificate data>".into()), "must contain at least one CERTIFICATE PEM block and nothing else"));
    }
}

/// `example.com/name`: a DNS subdomain, a slash, and a non-empty path.
fn signer_name_ok(signer: &str) -> bool {
    match signer.split_once('/') {
        Some((domain, path)) => !path.is_empty() && domain.contains('.') && names::dns1123_subdomain(domain).is_empty(),
        None => false,
    }
}

fn is_certificate_pem(data: &[u8]) -> bool {
    let mut rest = data;
    let mut found = false;
    while !rest.iter().all(u8::is_ascii_whitespace) {
        match x509_parser::pem::parse_x509_pem(rest) {
            Ok((after, block)) if block.label == "CERTIFICATE" && block.parse_x509().is_ok() => {
                found = true;
                rest = after;
            }
            _ => return false,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use base64::Engine as _;
    use serde_json::{Value, json};

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn object(request: &str, signer: Value, usages: Value) -> Value {
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "c"}, "spec": {"request": b64(request), "signerName": signer, "usages": usages}})
    }

    fn errors(o: &Value, old: Option<&Value>) -> Vec<String> {
        validate("certificates.k8s.io", "CertificateSigningRequest", o, old).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_kubelet_request_is_valid() {
        let (pem, _) = crate::auth::csr::make_request("system:node:w1", &["system:nodes"], &[]);
        let o = object(&pem, json!("kubernetes.io/kube-apiserver-client-kubelet"), json!(["digital signature", "client auth"]));
        assert_eq!(errors(&o, None), Vec::<String>::new());
    }

    #[test]
    fn bad_requests_signers_and_usages_are_named() {
        let o = object("not a csr", json!("kubernetes.io/x"), json!(["client auth"]));
        assert_eq!(errors(&o, None), vec!["spec.request: Invalid value: PEM block type must be CERTIFICATE REQUEST"]);
        let (pem, _) = crate::auth::csr::make_request("x", &[], &[]);
        let mut o = object(&pem, json!(""), json!([]));
        o["spec"]["expirationSeconds"] = json!(60);
        assert_eq!(
            errors(&o, None),
            vec!["spec.signerName: Required value", "spec.usages: Required value: usages must be provided", "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)"]
        );
        let o = object(&pem, json!("no-slash"), json!(["client auth", "client auth", "flying"]));
        let e = errors(&o, None);
        assert!(e[0].starts_with("spec.signerName: Invalid value: \"no-slash\""), "{e:?}");
        assert_eq!(e[1], "spec.usages[1]: Duplicate value: \"client auth\"");
        assert!(e[2].starts_with("spec.usages[2]: Unsupported value: \"flying\""), "{e:?}");
        let mut missing = object(&pem, json!("a.b/c"), json!(["client auth"]));
        missing["spec"].as_object_mut().unwrap().remove("signerName");
        assert_eq!(errors(&missing, None), vec!["spec.signerName: Required value"]);
    }

    #[test]
    fn conditions_and_certificates() {
        let (pem, _) = crate::auth::csr::make_request("x", &[], &[]);
        let mut o = object(&pem, json!("a.b/c"), json!(["client auth"]));
        o["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]});
        assert_eq!(errors(&o, None), vec!["status.conditions: Invalid value: Approved and Denied conditions are mutually exclusive"]);
        o["status"] = json!({"certificate": b64("junk")});
        assert!(errors(&o, None)[0].starts_with("status.certificate: Invalid value"));
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::auth::Pki::load_or_create(dir.path(), &[]).unwrap();
        o["status"] = json!({"certificate": b64(pki.ca_cert_pem())});
        assert_eq!(errors(&o, None), Vec::<String>::new());
        let old = o.clone();
        o["status"] = json!({"certificate": b64(pki.admin_cert_pem())});
        assert_eq!(errors(&o, Some(&old)), vec!["status.certificate: Forbidden: updates may not modify existing certificate content"]);
    }
}
