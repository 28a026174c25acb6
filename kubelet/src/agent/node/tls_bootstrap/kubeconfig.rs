//! The kubeconfig files of bootstrapping: the cluster a bootstrap kubeconfig points at (its
//! current context's server and CA), whether the node's own kubeconfig still holds a
//! usable client certificate, and writing that kubeconfig.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{AuthInfo, Cluster, Kubeconfig};

use super::BootstrapError;
use super::certs;

/// The API server a kubeconfig's current context reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAccess {
    pub cluster_name: String,
    pub server: String,
    pub ca_pem: String,
}

/// Whether the node's kubeconfig can be used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Valid,
    Missing,
    /// Unreadable, or its client certificate is; the reason.
    Unusable(String),
    /// Its client certificate expired (at, seconds since the epoch).
    Expired(i64),
}

fn bad(path: &Path, message: impl Into<String>) -> BootstrapError {
    BootstrapError::Kubeconfig { path: path.to_path_buf(), message: message.into() }
}

fn read(path: &Path) -> Result<Kubeconfig, BootstrapError> {
    Kubeconfig::read_from(path).map_err(|e| bad(path, e.to_string()))
}

/// A path in a kubeconfig is relative to the kubeconfig's folder.
fn resolve(kubeconfig: &Path, file: &str) -> PathBuf {
    let file = Path::new(file);
    match kubeconfig.parent() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

/// Inline `*-data` (base64) or else the named file.
fn data_or_file(kubeconfig: &Path, data: Option<&str>, file: Option<&str>, what: &str) -> Result<Option<Vec<u8>>, BootstrapError> {
    if let Some(data) = data.filter(|d| !d.is_empty()) {
        return STANDARD.decode(data.trim()).map(Some).map_err(|e| bad(kubeconfig, format!("{what}-data is not base64: {e}")));
    }
    match file.filter(|f| !f.is_empty()) {
        Some(file) => {
            let path = resolve(kubeconfig, file);
            std::fs::read(&path).map(Some).map_err(|e| bad(kubeconfig, format!("{what} {}: {e}", path.display())))
        }
        None => Ok(None),
    }
}

/// The current context's cluster and user.
fn current(path: &Path, config: &Kubeconfig) -> Result<(String, Cluster, Option<AuthInfo>), BootstrapError> {
    let context_name = config.current_context.clone().or_else(|| (config.contexts.len() == 1).then(|| config.contexts[0].name.clone()));
    let context = context_name
        .and_then(|name| config.contexts.iter().find(|c| c.name == name))
        .and_then(|c| c.context.clone())
        .ok_or_else(|| bad(path, "no current context"))?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| bad(path, format!("the current context's cluster {:?} is not in the file", context.cluster)))?;
    let user = context.user.and_then(|user| config.auth_infos.iter().find(|a| a.name == user)).and_then(|a| a.auth_info.clone());
    Ok((context.cluster, cluster, user))
}

/// The server and CA of `path`'s current context; both are needed to write the node's
/// kubeconfig and to trust the API server.
pub fn cluster_access(path: &Path) -> Result<ClusterAccess, BootstrapError> {
    let config = read(path)?;
    let (cluster_name, cluster, _) = current(path, &config)?;
    let server = cluster.server.clone().filter(|s| !s.is_empty()).ok_or_else(|| bad(path, "the current cluster has no server"))?;
    let ca = data_or_file(path, cluster.certificate_authority_data.as_deref(), cluster.certificate_authority.as_deref(), "certificate-authority")?
        .ok_or_else(|| bad(path, "the current cluster has no certificate-authority(-data): the node must know the cluster CA"))?;
    let ca_pem = String::from_utf8(ca).map_err(|_| bad(path, "the cluster CA is not PEM text"))?;
    if !ca_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad(path, "the cluster CA is not a PEM certificate"));
    }
    Ok(ClusterAccess { cluster_name, server, ca_pem })
}

/// Whether the node kubeconfig at `path` can be used at `now`: it reads, and its client
/// certificate (if it has one rather than, say, a token) has not expired.
pub fn credentials(path: &Path, now: i64) -> Credentials {
    if !path.exists() {
        return Credentials::Missing;
    }
    let unusable = |e: BootstrapError| Credentials::Unusable(e.to_string());
    let config = match read(path) {
        Ok(c) => c,
        Err(e) => return unusable(e),
    };
    let user = match current(path, &config) {
        Ok((_, _, user)) => user,
        Err(e) => return unusable(e),
    };
    let Some(user) = user else { return Credentials::Unusable(format!("kubeconfig {}: the current context has no user", path.display())) };
    let cert = match data_or_file(path, user.client_certificate_data.as_deref(), user.client_certificate.as_deref(), "client-certificate") {
        Ok(c) => c,
        Err(e) => return unusable(e),
    };
    let Some(cert) = cert else { return Credentials::Valid };
    match certs::cert_facts(&cert) {
        Ok(facts) if facts.expired(now) => Credentials::Expired(facts.not_after),
        Ok(_) => Credentials::Valid,
        Err(e) => Credentials::Unusable(format!("kubeconfig {}: client certificate: {e}", path.display())),
    }
}

/// Write the node's kubeconfig (mode 600, atomically): `access`'s server and CA, the user
/// `system:node:NODE` with `cert_pem` and `key_pem` embedded.
pub fn write_node_kubeconfig(path: &Path, access: &ClusterAccess, node: &str, cert_pem: &str, key_pem: &str) -> Result<(), BootstrapError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BootstrapError::Write { path: dir.to_path_buf(), source })?;
    }
    let credentials = apiserver_lite::auth::Credentials::ClientCert { cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string() };
    apiserver_lite::auth::kubeconfig::write(path, &access.cluster_name, &access.server, &access.ca_pem, &certs::node_user(node), credentials)
        .map_err(|e| bad(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_after_year: i32) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn access() -> ClusterAccess {
        ClusterAccess { cluster_name: "c".into(), server: "https://10.0.0.1:6443".into(), ca_pem: cert(2100).0 }
    }

    #[test]
    fn a_written_kubeconfig_reads_back_and_is_valid_until_its_certificate_expires() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("kubelet.kubeconfig");
        assert_eq!(credentials(&path, certs::now()), Credentials::Missing);
        let (cert_pem, key_pem) = cert(2100);
        let access = access();
        write_node_kubeconfig(&path, &access, "n1", &cert_pem, &key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(cluster_access(&path).unwrap(), access);
        assert_eq!(credentials(&path, certs::now()), Credentials::Valid);
        let (old, key) = cert(2001);
        write_node_kubeconfig(&path, &access, "n1", &old, &key).unwrap();
        assert!(matches!(credentials(&path, certs::now()), Credentials::Expired(_)));
        std::fs::write(&path, "{{{").unwrap();
        assert!(matches!(credentials(&path, certs::now()), Credentials::Unusable(_)));
    }

    #[test]
    fn a_bootstrap_kubeconfig_with_a_token_and_a_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = access().ca_pem;
        std::fs::write(dir.path().join("ca.crt"), &ca).unwrap();
        let path = dir.path().join("bootstrap.kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://h:6443\n    certificate-authority: ca.crt\n\
             users:\n- name: b\n  user:\n    token: abcdef.0123456789abcdef\ncontexts:\n- name: b@k\n  context:\n    cluster: k\n    user: b\ncurrent-context: b@k\n",
        )
        .unwrap();
        assert_eq!(cluster_access(&path).unwrap(), ClusterAccess { cluster_name: "k".into(), server: "https://h:6443".into(), ca_pem: ca });
        // A token user has no certificate to expire.
        assert_eq!(credentials(&path, certs::now()), Credentials::Valid);
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        let err = cluster_access(&path).unwrap_err().to_string();
        assert!(err.contains("ca.crt") && err.contains("bootstrap.kubeconfig"), "{err}");
    }
}
