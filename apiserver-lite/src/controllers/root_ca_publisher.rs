//! The root CA publisher (kube-controller-manager's root-ca-cert-publisher): every namespace
//! has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA, so pods can check the
//! API server they reach at kubernetes.default.svc (the automounted token volume projects
//! it). Created when a namespace appears, put back when deleted, and reset when someone
//! changes its data or drops its description.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::backoff::Backoff;
use crate::admission::service_account::ROOT_CA_CONFIG_MAP;

/// The annotation that says what the ConfigMap is for.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's words for it.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
/// The key the CA is under.
pub const CA_KEY: &str = "ca.crt";

#[derive(Debug, thiserror::Error)]
pub enum RootCaError {
    #[error("{action} configmap {namespace}/kube-root-ca.crt: {source}")]
    Api { namespace: String, action: &'static str, source: Box<kube::Error> },
    #[error("reading the cluster CA from kubeconfig {path}: {reason}")]
    Kubeconfig { path: std::path::PathBuf, reason: String },
}

struct Context {
    client: Client,
    ca_pem: String,
    backoff: Backoff,
}

/// Run until the process ends, publishing `ca_pem`. Without a CA (a client that was given
/// none, as in tests) there is nothing to publish: it says so and returns.
pub async fn run(client: Client, ca_pem: Option<String>) {
    let Some(ca_pem) = ca_pem.filter(|pem| !pem.trim().is_empty()) else {
        tracing::info!("root CA publisher: no cluster CA configured; kube-root-ca.crt is not published");
        return;
    };
    let config_maps = Api::<ConfigMap>::all(client.clone());
    let only_ours = watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIG_MAP}"));
    Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .watches(config_maps, only_ours, |cm: ConfigMap| cm.namespace().map(|ns| ObjectRef::new(&ns)))
        .run(reconcile, error_policy, Arc::new(Context { client, ca_pem, backoff: Backoff::default() }))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("root CA publisher: {e}");
            }
        })
        .await;
}

fn error_policy(ns: Arc<Namespace>, err: &RootCaError, ctx: Arc<Context>) -> Action {
    tracing::warn!("root CA publisher: {err}");
    Action::requeue(ctx.backoff.failed(&ns.name_any()))
}

/// The data the ConfigMap must hold.
fn wanted_data(ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(CA_KEY.to_string(), ca_pem.to_string())])
}

/// `existing` with the CA and the description put back, or None when it already has both.
pub fn repaired(existing: &ConfigMap, ca_pem: &str) -> Option<ConfigMap> {
    let data = wanted_data(ca_pem);
    let described = existing.metadata.annotations.as_ref().and_then(|a| a.get(DESCRIPTION_ANNOTATION)).is_some_and(|d| !d.is_empty());
    if existing.data.as_ref() == Some(&data) && described {
        return None;
    }
    let mut fixed = existing.clone();
    fixed.data = Some(data);
    fixed.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Some(fixed)
}

/// The ConfigMap as a namespace gets it.
pub fn fresh(ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROOT_CA_CONFIG_MAP.into()),
            annotations: Some(BTreeMap::from([(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string())])),
            ..Default::default()
        },
        data: Some(wanted_data(ca_pem)),
        ..Default::default()
    }
}

/// A create refused because the namespace is gone or going: nothing to retry.
fn namespace_gone(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 404 || (s.code == 403 && s.message.contains("is being terminated")),
        _ => false,
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, RootCaError> {
    let terminating = ns.metadata.deletion_timestamp.is_some() || ns.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p != "Active");
    if terminating {
        return Ok(Action::await_change());
    }
    let namespace = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let err = |action: &'static str| {
        let namespace = namespace.clone();
        move |source| RootCaError::Api { namespace, action, source: Box::new(source) }
    };
    match api.get_opt(ROOT_CA_CONFIG_MAP).await.map_err(err("reading"))? {
        None => match api.create(&PostParams::default(), &fresh(&ctx.ca_pem)).await {
            Ok(_) => {}
            Err(e) if namespace_gone(&e) => {}
            // Created meanwhile (by another copy, or a restart's watch replay): its watch
            // event brings the namespace back here to check it.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(err("creating")(e)),
        },
        Some(existing) => {
            if let Some(fixed) = repaired(&existing, &ctx.ca_pem) {
                match api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &fixed).await {
                    Ok(_) => {}
                    // A newer write or a delete: its own event brings us back.
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                    Err(e) => return Err(err("updating")(e)),
                }
            }
        }
    }
    ctx.backoff.succeeded(&namespace);
    Ok(Action::await_change())
}

/// The CA a kubeconfig's current context trusts (its cluster's certificate-authority-data,
/// or the file certificate-authority names), as PEM: what kube-controller-manager publishes
/// when it is not given a root CA file.
pub fn ca_from_kubeconfig(path: &Path) -> Result<String, RootCaError> {
    use base64::Engine as _;
    let fail = |reason: String| RootCaError::Kubeconfig { path: path.to_path_buf(), reason };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
    let context_name = kubeconfig.current_context.clone().ok_or_else(|| fail("it has no current-context".into()))?;
    let context = kubeconfig.contexts.iter().find(|c| c.name == context_name).and_then(|c| c.context.as_ref()).ok_or_else(|| fail(format!("context {context_name:?} is not in it")))?;
    let cluster = kubeconfig.clusters.iter().find(|c| c.name == context.cluster).and_then(|c| c.cluster.as_ref()).ok_or_else(|| fail(format!("cluster {:?} is not in it", context.cluster)))?;
    if let Some(data) = cluster.certificate_authority_data.as_deref().filter(|d| !d.is_empty()) {
        let pem = base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| fail(format!("certificate-authority-data is not base64: {e}")))?;
        return String::from_utf8(pem).map_err(|_| fail("certificate-authority-data is not PEM text".into()));
    }
    if let Some(file) = cluster.certificate_authority.as_deref().filter(|f| !f.is_empty()) {
        // A relative path is relative to the kubeconfig, as kubectl reads it.
        let file = path.parent().unwrap_or(Path::new(".")).join(file);
        return std::fs::read_to_string(&file).map_err(|e| fail(format!("certificate-authority {}: {e}", file.display())));
    }
    Err(fail(format!("cluster {:?} names no certificate authority", context.cluster)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_fresh_config_map_has_the_ca_and_the_description() {
        let cm = fresh(PEM);
        assert_eq!(cm.metadata.name.as_deref(), Some("kube-root-ca.crt"));
        assert_eq!(cm.data.as_ref().unwrap()["ca.crt"], PEM);
        assert_eq!(cm.metadata.annotations.as_ref().unwrap()[DESCRIPTION_ANNOTATION], DESCRIPTION);
        assert!(repaired(&cm, PEM).is_none(), "nothing to fix");
    }

    #[test]
    fn changed_data_or_a_lost_description_is_put_back() {
        let mut changed = fresh(PEM);
        changed.data.as_mut().unwrap().insert("extra".into(), "x".into());
        changed.metadata.annotations.as_mut().unwrap().insert("mine".into(), "kept".into());
        let fixed = repaired(&changed, PEM).unwrap();
        assert_eq!(fixed.data, fresh(PEM).data);
        assert_eq!(fixed.metadata.annotations.as_ref().unwrap()["mine"], "kept");

        let mut undescribed = fresh(PEM);
        undescribed.metadata.annotations = None;
        assert_eq!(repaired(&undescribed, PEM).unwrap().metadata.annotations.unwrap()[DESCRIPTION_ANNOTATION], DESCRIPTION);

        assert!(repaired(&fresh("old"), PEM).is_some(), "a new CA replaces the old");
    }

    #[test]
    fn the_ca_comes_from_the_kubeconfig() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        let write = |cluster: &str| {
            let text = format!("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n{cluster}users:\n- name: u\n  user: {{token: t}}\n");
            std::fs::write(&path, text).unwrap();
        };
        write(&format!("    certificate-authority-data: {}\n", base64::engine::general_purpose::STANDARD.encode(PEM)));
        assert_eq!(ca_from_kubeconfig(&path).unwrap(), PEM);
        std::fs::write(dir.path().join("ca.crt"), PEM).unwrap();
        write("    certificate-authority: ca.crt\n");
        assert_eq!(ca_from_kubeconfig(&path).unwrap(), PEM);
        write("");
        assert!(ca_from_kubeconfig(&path).unwrap_err().to_string().contains("names no certificate authority"));
    }
}
