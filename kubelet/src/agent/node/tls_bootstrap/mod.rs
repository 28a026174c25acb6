//! TLS bootstrapping, as the kubelet's `--bootstrap-kubeconfig`: a joining node that has no
//! usable credentials of its own asks the cluster for them with a bootstrap token.
//!
//! 1. [`ensure_client_kubeconfig`]: if the node's kubeconfig is missing, unreadable or its
//!    client certificate expired, make a key (ECDSA P-256) and a request for
//!    CN=system:node:NAME, O=system:nodes, send it as a CertificateSigningRequest
//!    (signer `kubernetes.io/kube-apiserver-client-kubelet`) with the bootstrap
//!    kubeconfig's credentials, wait for the certificate, and write the node's kubeconfig
//!    (the bootstrap kubeconfig's server and CA, the new certificate and key embedded; the
//!    key lives nowhere else). A usable kubeconfig is kept: a restart keeps its identity.
//! 2. [`ensure_serving_cert`]: the kubelet API's certificate, requested the same way from
//!    signer `kubernetes.io/kubelet-serving` with the node's own (new) credentials, for the
//!    node's IP and name; written under a folder with the cluster CA (the API server's
//!    client certificate for kubelets is issued by it) and kept while it is valid.
//!
//! - `certs` — keys, requests, what a held certificate says (expiry, IPs, public key).
//! - `kubeconfig` — reading a kubeconfig's cluster and credentials, writing the node's.
//! - `signing` — the CSR object, created and waited on.
//! - `join` — the join flags (`--bootstrap-kubeconfig` and the TLS files) checked, then carried out.
//! - `api` — the CSR calls and the client from a kubeconfig, as traits (`kube` implements them).

pub mod api;
pub mod certs;
pub mod join;
pub mod kubeconfig;
pub mod signing;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use api::{CsrApi, CsrCallError, CsrConnector, KubeConnector};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("node name {node:?} must be a lowercase RFC 1123 subdomain to be named in a certificate")]
    NodeName { node: String },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("a key and certificate request for node {node}: {message}")]
    Request { node: String, message: String },
    #[error("connecting with kubeconfig {path}: {message}")]
    Connect { path: PathBuf, message: String },
    #[error("creating a CertificateSigningRequest for signer {signer}: {message}")]
    Create { signer: String, message: String },
    #[error("CertificateSigningRequest {csr} was {condition} (reason {reason:?}: {message:?}); see kubectl describe csr {csr}")]
    Refused { csr: String, condition: String, reason: String, message: String },
    #[error("the certificate of CertificateSigningRequest {csr} is unusable: {message}")]
    Issued { csr: String, message: String },
}

/// Usages of the node's client certificate.
pub const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];
/// Usages of the kubelet API's serving certificate.
pub const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];

/// What [`ensure_client_kubeconfig`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutcome {
    /// The kubeconfig was usable and is kept.
    Kept,
    /// A new certificate was issued; why the old kubeconfig was not used.
    Bootstrapped { reason: String },
}

/// The kubelet API's files (`--tls-cert-file`, `--tls-private-key-file`, `--client-ca-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl ServingFiles {
    /// `kubelet.crt`, `kubelet.key` and `ca.crt` under `dir` (`<data-dir>/pki`).
    pub fn under(dir: &Path) -> ServingFiles {
        ServingFiles { cert: dir.join("kubelet.crt"), key: dir.join("kubelet.key"), client_ca: dir.join("ca.crt") }
    }
}

/// A node name fit for a certificate's subject and for a DNS SAN.
pub fn validate_node_name(node: &str) -> Result<(), BootstrapError> {
    let ok = !node.is_empty()
        && node.len() <= 253
        && node.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && node.split('.').all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if ok { Ok(()) } else { Err(BootstrapError::NodeName { node: node.to_string() }) }
}

/// Step 1: keep `kubeconfig` if usable, else get `node` a client certificate with the
/// credentials of `bootstrap` and write `kubeconfig`.
pub async fn ensure_client_kubeconfig(connector: &dyn CsrConnector, node: &str, kubeconfig: &Path, bootstrap: &Path) -> Result<ClientOutcome, BootstrapError> {
    validate_node_name(node)?;
    let reason = match kubeconfig::credentials(kubeconfig, certs::now()) {
        kubeconfig::Credentials::Valid => return Ok(ClientOutcome::Kept),
        kubeconfig::Credentials::Missing => format!("{} does not exist", kubeconfig.display()),
        kubeconfig::Credentials::Unusable(why) => why,
        kubeconfig::Credentials::Expired(at) => format!("the client certificate in {} expired (at {at} s since the epoch)", kubeconfig.display()),
    };
    tracing::info!("bootstrapping the node's client certificate with {}: {reason}", bootstrap.display());
    let access = kubeconfig::cluster_access(bootstrap)?;
    let api = connector.connect(bootstrap).await.map_err(|e| BootstrapError::Connect { path: bootstrap.to_path_buf(), message: e.0 })?;
    let request = certs::new_request(node, &[], &[])?;
    let csr = signing::csr_object(&request.csr_pem, signing::CLIENT_SIGNER, &CLIENT_USAGES);
    let cert_pem = signing::request_certificate(api.as_ref(), &csr).await?;
    kubeconfig::write_node_kubeconfig(kubeconfig, &access, node, &cert_pem, &request.key_pem)?;
    tracing::info!("wrote {} with the node's new client certificate", kubeconfig.display());
    Ok(ClientOutcome::Bootstrapped { reason })
}

/// Step 2: the kubelet API's serving certificate for `node` at `node_ip` as `files.cert` and
/// `files.key` (`files.client_ca` is not touched: see [`write_cluster_ca`]); a certificate
/// there that is unexpired, names `node_ip` and matches its key is kept, else one is
/// requested with `kubeconfig`'s credentials. Returns whether one was requested.
pub async fn ensure_serving_cert(connector: &dyn CsrConnector, node: &str, node_ip: IpAddr, kubeconfig: &Path, files: &ServingFiles) -> Result<bool, BootstrapError> {
    validate_node_name(node)?;
    match reusable(files, node_ip) {
        None => return Ok(false),
        Some(why) => tracing::info!("requesting a serving certificate for the kubelet API: {why}"),
    }
    let api = connector.connect(kubeconfig).await.map_err(|e| BootstrapError::Connect { path: kubeconfig.to_path_buf(), message: e.0 })?;
    let request = certs::new_request(node, &[node_ip], &[node.to_string()])?;
    let csr = signing::csr_object(&request.csr_pem, signing::SERVING_SIGNER, &SERVING_USAGES);
    let cert_pem = signing::request_certificate(api.as_ref(), &csr).await?;
    // The key first: a crash in between leaves a pair that does not match, which is not reused.
    write_file(&files.key, request.key_pem.as_bytes(), 0o600)?;
    write_file(&files.cert, cert_pem.as_bytes(), 0o644)?;
    tracing::info!("wrote the kubelet API's serving certificate {}", files.cert.display());
    Ok(true)
}

/// Write the CA of `kubeconfig`'s cluster to `out`: the kubelet API's client CA, as the
/// API server's client certificate for kubelets is issued by the cluster CA.
pub fn write_cluster_ca(kubeconfig: &Path, out: &Path) -> Result<(), BootstrapError> {
    let access = kubeconfig::cluster_access(kubeconfig)?;
    write_file(out, access.ca_pem.as_bytes(), 0o644)
}

/// `None` if the serving certificate in `files` can be used; else why not.
fn reusable(files: &ServingFiles, node_ip: IpAddr) -> Option<String> {
    let (cert, key) = match (std::fs::read(&files.cert), std::fs::read_to_string(&files.key)) {
        (Ok(cert), Ok(key)) => (cert, key),
        _ => return Some(format!("{} or {} is missing", files.cert.display(), files.key.display())),
    };
    match certs::cert_facts(&cert) {
        Err(e) => Some(format!("{}: {e}", files.cert.display())),
        Ok(facts) if facts.expired(certs::now()) => Some(format!("{} expired", files.cert.display())),
        Ok(facts) if !facts.ips.contains(&node_ip) => Some(format!("{} does not name the node IP {node_ip}", files.cert.display())),
        Ok(facts) if !facts.matches_key(&key) => Some(format!("{} is not the key of {}", files.key.display(), files.cert.display())),
        Ok(_) => None,
    }
}

/// Write whole or not at all (temp file, fsync, rename) with permission bits `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), BootstrapError> {
    let err = |source| BootstrapError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
