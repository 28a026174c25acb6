//! Asking the cluster to sign: a CertificateSigningRequest object for a request, created,
//! then read every second until it carries a certificate or is denied or failed.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::BootstrapError;
use super::api::CsrApi;
use super::certs;

/// The signer of nodes' client certificates (user system:node:NAME).
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of kubelets' serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// How often the CSR is read while it waits.
const POLL: Duration = Duration::from_secs(1);
/// How often the wait is told about.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// The CSR object for `csr_pem` (the API's byte field: base64 of the PEM on the wire).
pub fn csr_object(csr_pem: &str, signer: &str, usages: &[&str]) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: Some("node-csr-".into()), ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: signer.to_string(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    }
}

/// Create the CSR and wait for its certificate (PEM); checks the certificate parses and
/// has not expired.
pub async fn request_certificate(api: &dyn CsrApi, csr: &CertificateSigningRequest) -> Result<String, BootstrapError> {
    let created = api.create(csr).await.map_err(|e| BootstrapError::Create { signer: csr.spec.signer_name.clone(), message: e.0 })?;
    let name = created.metadata.name.clone().ok_or_else(|| BootstrapError::Create { signer: csr.spec.signer_name.clone(), message: "the created CSR has no name".into() })?;
    tracing::info!("created CSR {name} ({}); waiting for it to be approved (kubectl certificate approve {name})", csr.spec.signer_name);
    let pem = wait_for_certificate(api, &name, created).await?;
    match certs::cert_facts(pem.as_bytes()) {
        Ok(facts) if facts.expired(certs::now()) => Err(BootstrapError::Issued { csr: name, message: "the certificate has already expired".into() }),
        Ok(_) => Ok(pem),
        Err(message) => Err(BootstrapError::Issued { csr: name, message }),
    }
}

/// What a CSR's status says: its certificate, or that it was refused.
fn outcome(name: &str, csr: &CertificateSigningRequest) -> Option<Result<String, BootstrapError>> {
    let status = csr.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        if (c.type_ == "Denied" || c.type_ == "Failed") && c.status != "False" {
            return Some(Err(BootstrapError::Refused {
                csr: name.to_string(),
                condition: c.type_.clone(),
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            }));
        }
    }
    let cert = status.certificate.as_ref().filter(|c| !c.0.is_empty())?;
    Some(String::from_utf8(cert.0.clone()).map_err(|_| BootstrapError::Issued { csr: name.to_string(), message: "the certificate is not PEM text".into() }))
}

async fn wait_for_certificate(api: &dyn CsrApi, name: &str, first: CertificateSigningRequest) -> Result<String, BootstrapError> {
    let mut last_report = tokio::time::Instant::now();
    let mut current = Ok(first);
    loop {
        match &current {
            Ok(csr) => {
                if let Some(done) = outcome(name, csr) {
                    return done;
                }
            }
            // The server may be restarting; the CSR is still there when it is back.
            Err(e) => tracing::debug!("reading CSR {name}: {e}"),
        }
        if last_report.elapsed() >= REPORT_EVERY {
            let error = current.as_ref().err().map(|e| format!(" (last read failed: {e})")).unwrap_or_default();
            tracing::info!("waiting for CSR {name} to be approved (kubectl certificate approve {name}){error}");
            last_report = tokio::time::Instant::now();
        }
        tokio::time::sleep(POLL).await;
        current = api.get(name).await;
    }
}
