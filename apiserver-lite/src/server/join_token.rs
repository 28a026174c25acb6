//! `apiserver-lite token create`: a bootstrap token for joining a node, as `kubeadm token
//! create` makes one. The token's Secret is created through the running server's API (with
//! the admin kubeconfig the server wrote in its data dir), and a bootstrap kubeconfig
//! holding the token and the cluster CA is written for the kubelet's
//! `--bootstrap-kubeconfig`; the kubelet then asks for its own certificate with a CSR.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use crate::auth::bootstrap_token;

/// The group kubeadm puts its join tokens in (beside `system:bootstrappers`).
pub const DEFAULT_EXTRA_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// The kubeconfig's user name for the token, as kubeadm names it.
pub const BOOTSTRAP_USER: &str = "kubelet-bootstrap";

#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    #[error("{path} does not exist: start apiserver-lite with --data-dir {data_dir} first (it writes admin.kubeconfig)")]
    NoAdminKubeconfig { path: PathBuf, data_dir: PathBuf },
    #[error("reading {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("--server {0:?} must be an https:// URL")]
    Server(String),
    #[error("creating secret kube-system/bootstrap-token-{id} at {server} (is apiserver-lite running?): {source}")]
    Create { id: String, server: String, source: Box<kube::Error> },
    #[error("writing the bootstrap kubeconfig {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("generating a random token: {0}")]
    Random(String),
}

/// What to make.
#[derive(Debug, Clone)]
pub struct JoinTokenOptions {
    pub data_dir: PathBuf,
    /// The API server's URL as the joining node reaches it; None: the admin kubeconfig's.
    pub server: Option<String>,
    pub out: PathBuf,
    /// How long the token works; zero: until its Secret is deleted (as kubeadm's --ttl 0).
    pub ttl: Duration,
    pub description: Option<String>,
}

/// Create the token's Secret and write the bootstrap kubeconfig; the token.
pub async fn create_join_token(options: &JoinTokenOptions) -> Result<String, JoinTokenError> {
    let admin = options.data_dir.join("admin.kubeconfig");
    if !admin.exists() {
        return Err(JoinTokenError::NoAdminKubeconfig { path: admin, data_dir: options.data_dir.clone() });
    }
    let read_err = |reason: String| JoinTokenError::Kubeconfig { path: admin.clone(), reason };
    let ca_pem = crate::controllers::root_ca_publisher::ca_from_kubeconfig(&admin).map_err(|e| read_err(e.to_string()))?;
    let admin_server = kubeconfig_server(&admin).map_err(read_err)?;
    let server = options.server.clone().unwrap_or_else(|| admin_server.clone());
    if !server.starts_with("https://") {
        return Err(JoinTokenError::Server(server));
    }
    let client = crate::controllers::kubeconfig_client(&admin).await.map_err(|e| read_err(e.to_string()))?;

    let token = bootstrap_token::generate().map_err(|e| JoinTokenError::Random(e.to_string()))?;
    let parts = bootstrap_token::parse(&token).expect("generated tokens have the right form");
    let secret = token_secret(parts.id, parts.secret, options.ttl, options.description.as_deref(), time::OffsetDateTime::now_utc());
    let secret: Secret = serde_json::from_value(secret).expect("a Secret");
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client, bootstrap_token::SECRET_NAMESPACE);
    secrets
        .create(&Default::default(), &secret)
        .await
        .map_err(|source| JoinTokenError::Create { id: parts.id.to_string(), server: admin_server, source: Box::new(source) })?;
    crate::auth::kubeconfig::write(&options.out, "apiserver-lite", &server, &ca_pem, BOOTSTRAP_USER, crate::auth::kubeconfig::Credentials::Token(token.clone()))
        .map_err(|e| JoinTokenError::Write { path: options.out.clone(), reason: e.to_string() })?;
    Ok(token)
}

/// The Secret `kube-system/bootstrap-token-ID`, as kubeadm writes it.
pub fn token_secret(id: &str, secret: &str, ttl: Duration, description: Option<&str>, now: time::OffsetDateTime) -> serde_json::Value {
    let mut data = json!({
        "token-id": id,
        "token-secret": secret,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": DEFAULT_EXTRA_GROUP,
    });
    if !ttl.is_zero() {
        let expires = now + ttl;
        data["expiration"] = json!(expires.replace_nanosecond(0).unwrap_or(expires).format(&time::format_description::well_known::Rfc3339).expect("a time formats"));
    }
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        data["description"] = json!(d);
    }
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{}{id}", bootstrap_token::SECRET_PREFIX), "namespace": bootstrap_token::SECRET_NAMESPACE},
        "type": bootstrap_token::SECRET_TYPE,
        "stringData": data,
    })
}

/// The server URL of a kubeconfig's current context.
fn kubeconfig_server(path: &Path) -> Result<String, String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    let context_name = kubeconfig.current_context.clone().ok_or("it has no current-context")?;
    let context = kubeconfig.contexts.iter().find(|c| c.name == context_name).and_then(|c| c.context.as_ref()).ok_or_else(|| format!("context {context_name:?} is not in it"))?;
    let cluster = kubeconfig.clusters.iter().find(|c| c.name == context.cluster).and_then(|c| c.cluster.as_ref()).ok_or_else(|| format!("cluster {:?} is not in it", context.cluster))?;
    cluster.server.clone().filter(|s| !s.is_empty()).ok_or_else(|| format!("cluster {:?} has no server", context.cluster))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_a_kubeadm_bootstrap_token() {
        let now = time::macros::datetime!(2026-01-01 00:00:00.5 UTC);
        let s = token_secret("abcdef", "0123456789abcdef", Duration::from_secs(86400), Some("for w1"), now);
        assert_eq!(s["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
        assert_eq!(s["stringData"]["expiration"], "2026-01-02T00:00:00Z");
        assert_eq!(s["stringData"]["usage-bootstrap-authentication"], "true");
        assert_eq!(s["stringData"]["description"], "for w1");
        // It passes the authenticator's checks.
        let mut data = std::collections::BTreeMap::new();
        for (k, v) in s["stringData"].as_object().unwrap() {
            data.insert(k.clone(), v.as_str().unwrap().to_string());
        }
        let secret = bootstrap_token::TokenSecret { type_: bootstrap_token::SECRET_TYPE.into(), data, deleting: false };
        let token = bootstrap_token::parse("abcdef.0123456789abcdef").unwrap();
        let user = bootstrap_token::user_for(&token, &secret, now.unix_timestamp()).unwrap();
        assert!(user.in_group(DEFAULT_EXTRA_GROUP));
        assert!(bootstrap_token::user_for(&token, &secret, now.unix_timestamp() + 86400).is_err());
        let forever = token_secret("abcdef", "0123456789abcdef", Duration::ZERO, None, now);
        assert!(forever["stringData"].get("expiration").is_none());
    }

    #[tokio::test]
    async fn a_data_dir_without_a_server_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let options = JoinTokenOptions { data_dir: dir.path().into(), server: None, out: dir.path().join("b.kubeconfig"), ttl: Duration::from_secs(60), description: None };
        let e = create_join_token(&options).await.unwrap_err();
        assert!(matches!(e, JoinTokenError::NoAdminKubeconfig { .. }), "{e}");
        assert!(e.to_string().contains("admin.kubeconfig"));
    }
}
