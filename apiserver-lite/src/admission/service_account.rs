//! The ServiceAccount admission step of a pod's create (kube-apiserver's ServiceAccount
//! plugin): the pod runs as `default` unless it names a service account, that account must
//! exist, its image pull secrets are the pod's when the pod has none, and, unless the pod or
//! the account turns automounting off, every container and init container gets the
//! `kube-api-access-xxxxx` projected volume (token, cluster CA, namespace) at
//! `/var/run/secrets/kubernetes.io/serviceaccount`, which the kubelet fills in.
//!
//! Pure over JSON like the rest of admission: the caller looks the service account up (see
//! [`service_account_to_look_up`]) and hands it to [`admit`]. Mirror pods (the kubelet's copies
//! of static pods) are never changed: the kubelet would see a spec that is not its own; they
//! may instead not reference service accounts, secrets or token projections at all.

use serde_json::{Map, Value, json};

/// The service account a pod that names none runs as.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where the token volume is mounted, and where a container's own mount keeps it out.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token volume's name before its five random characters.
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap with the cluster CA that the root CA publisher keeps in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The projected token's lifetime: upstream's 1 h + 7 s, an odd number the authenticator
/// recognises as an automounted token.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The annotation that makes a pod a mirror pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Why a pod is refused; the message follows `pods "NAME" is forbidden: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found")]
    NotFound { namespace: String, name: String },
    #[error("a mirror pod may not reference service accounts")]
    MirrorServiceAccount,
    #[error("a mirror pod may not reference secrets")]
    MirrorSecrets,
    #[error("a mirror pod may not use ServiceAccountToken volume projections")]
    MirrorTokenProjection,
}

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations").and_then(Value::as_object).is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// The service account the pod names: `serviceAccountName`, else the deprecated
/// `serviceAccount` alias (as the v1 conversion reads it), else none.
fn named_service_account(pod: &Value) -> Option<&str> {
    let spec = pod.get("spec")?;
    ["serviceAccountName", "serviceAccount"].iter().filter_map(|k| spec.get(*k).and_then(Value::as_str)).find(|s| !s.is_empty())
}

/// The service account [`admit`] needs to see for `pod`, or None when it needs none (a
/// mirror pod, or not a pod object at all).
pub fn service_account_to_look_up(pod: &Value) -> Option<String> {
    if !pod.get("spec").is_some_and(Value::is_object) || is_mirror(pod) {
        return None;
    }
    Some(named_service_account(pod).unwrap_or(DEFAULT_SERVICE_ACCOUNT).to_string())
}

/// Admit `pod`, being created in `namespace`, given its service account as stored (None:
/// it does not exist). Changes the pod in place; an error refuses it.
pub fn admit(pod: &mut Value, namespace: &str, service_account: Option<&Value>) -> Result<(), ServiceAccountError> {
    if !pod.get("spec").is_some_and(Value::is_object) {
        return Ok(());
    }
    if is_mirror(pod) {
        return check_mirror(pod);
    }
    let name = named_service_account(pod).unwrap_or(DEFAULT_SERVICE_ACCOUNT).to_string();
    let Some(sa) = service_account else {
        return Err(ServiceAccountError::NotFound { namespace: namespace.to_string(), name });
    };
    let spec = pod["spec"].as_object_mut().expect("checked above");
    // The v1 API shows the internal field under both names.
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    if automount(spec, sa) {
        mount_token(spec);
    }
    let pod_has_pull_secrets = spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    let sa_pull_secrets: Vec<Value> = sa.get("imagePullSecrets").and_then(Value::as_array).into_iter().flatten().map(|s| json!({"name": s.get("name").cloned().unwrap_or(json!(""))})).collect();
    if !pod_has_pull_secrets && !sa_pull_secrets.is_empty() {
        spec.insert("imagePullSecrets".into(), Value::Array(sa_pull_secrets));
    }
    Ok(())
}

/// The pod's `automountServiceAccountToken` wins, then the account's; on when neither says.
fn automount(spec: &Map<String, Value>, sa: &Value) -> bool {
    spec.get("automountServiceAccountToken").and_then(Value::as_bool).or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool)).unwrap_or(true)
}

/// The projected volume of an automounted token, as upstream writes it.
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    })
}

/// Mount the token volume in every init container and container that has nothing at the
/// token path, adding the volume if any of them needed it. A `kube-api-access-*` volume the
/// pod already has is reused (a pod copied from another keeps its volume). Ephemeral
/// containers are left alone: they are only ever added later, through a subresource this
/// step does not see (as upstream).
fn mount_token(spec: &mut Map<String, Value>) {
    let existing = spec.get("volumes").and_then(Value::as_array).into_iter().flatten().filter_map(|v| v.get("name").and_then(Value::as_str)).find(|n| n.starts_with(TOKEN_VOLUME_PREFIX)).map(str::to_string);
    let has_volume = existing.is_some();
    let volume_name = existing.unwrap_or_else(|| crate::handlers::objects::generate_name(TOKEN_VOLUME_PREFIX));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(container) = container.as_object_mut() else { continue };
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let mounts = mounts.as_array_mut().expect("made an array above");
            if mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)) {
                continue;
            }
            mounts.push(mount.clone());
            mounted = true;
        }
    }
    if mounted && !has_volume {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        volumes.as_array_mut().expect("made an array above").push(json!({"name": volume_name, "projected": token_volume_source()}));
    }
}

/// What a mirror pod may not reference: its static pod runs without API credentials.
fn check_mirror(pod: &Value) -> Result<(), ServiceAccountError> {
    if named_service_account(pod).is_some() {
        return Err(ServiceAccountError::MirrorServiceAccount);
    }
    let spec = &pod["spec"];
    let volumes: Vec<&Value> = spec.get("volumes").and_then(Value::as_array).into_iter().flatten().collect();
    let sources: Vec<&Value> = volumes.iter().filter_map(|v| v.pointer("/projected/sources").and_then(Value::as_array)).flatten().collect();
    if sources.iter().any(|s| s.get("serviceAccountToken").is_some_and(|t| !t.is_null())) {
        return Err(ServiceAccountError::MirrorTokenProjection);
    }
    if references_secrets(spec, &volumes, &sources) {
        return Err(ServiceAccountError::MirrorSecrets);
    }
    Ok(())
}

/// Whether the spec names a secret anywhere: pull secrets, secret volumes and projections,
/// volume plugins' secret references, and containers' env and envFrom.
fn references_secrets(spec: &Value, volumes: &[&Value], sources: &[&Value]) -> bool {
    let set = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
    if spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|s| !s.is_empty()) {
        return true;
    }
    let volume_refs = ["/secret", "/azureFile", "/cephfs/secretRef", "/cinder/secretRef", "/flexVolume/secretRef", "/iscsi/secretRef", "/rbd/secretRef", "/scaleIO/secretRef", "/storageos/secretRef", "/csi/nodePublishSecretRef"];
    if volumes.iter().any(|v| volume_refs.iter().any(|p| set(v.pointer(p)))) || sources.iter().any(|s| set(s.get("secret"))) {
        return true;
    }
    ["initContainers", "containers", "ephemeralContainers"].iter().filter_map(|k| spec.get(*k).and_then(Value::as_array)).flatten().any(|c| {
        let env = c.get("env").and_then(Value::as_array).into_iter().flatten().any(|e| set(e.pointer("/valueFrom/secretKeyRef")));
        let env_from = c.get("envFrom").and_then(Value::as_array).into_iter().flatten().any(|e| set(e.get("secretRef")));
        env || env_from
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    fn sa() -> Value {
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "ns"}})
    }

    fn token_volumes(p: &Value) -> Vec<&Value> {
        p["spec"]["volumes"].as_array().into_iter().flatten().filter(|v| v["name"].as_str().unwrap_or("").starts_with(TOKEN_VOLUME_PREFIX)).collect()
    }

    #[test]
    fn defaults_the_service_account_and_mounts_the_token_everywhere() {
        let mut p = pod(json!({"initContainers": [{"name": "i", "image": "x"}], "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}], "volumes": [{"name": "data", "emptyDir": {}}]}));
        assert_eq!(service_account_to_look_up(&p).as_deref(), Some("default"));
        admit(&mut p, "ns", Some(&sa())).unwrap();
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let volumes = token_volumes(&p);
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap().to_string();
        let suffix = name.strip_prefix(TOKEN_VOLUME_PREFIX).unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{name}");
        assert_eq!(
            volumes[0]["projected"],
            json!({"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]})
        );
        assert_eq!(p["spec"]["volumes"][0]["name"], "data", "the pod's own volumes come first");
        let mount = json!({"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"][1], mount);
        assert!(p["spec"].get("imagePullSecrets").is_none());
    }

    #[test]
    fn a_container_with_its_own_mount_at_the_path_keeps_it() {
        let own = json!({"name": "mine", "mountPath": TOKEN_MOUNT_PATH});
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x", "volumeMounts": [own]}, {"name": "b", "image": "x"}], "volumes": [{"name": "mine", "emptyDir": {}}]}));
        admit(&mut p, "ns", Some(&sa())).unwrap();
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([own]));
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"][0]["mountPath"], TOKEN_MOUNT_PATH);
        assert_eq!(token_volumes(&p).len(), 1);

        // Every container has its own: no volume is added.
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x", "volumeMounts": [own]}], "volumes": [{"name": "mine", "emptyDir": {}}]}));
        admit(&mut p, "ns", Some(&sa())).unwrap();
        assert!(token_volumes(&p).is_empty());
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn an_existing_token_volume_is_reused() {
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}], "volumes": [{"name": "kube-api-access-abcde", "projected": token_volume_source()}]}));
        admit(&mut p, "ns", Some(&sa())).unwrap();
        assert_eq!(token_volumes(&p).len(), 1);
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0]["name"], "kube-api-access-abcde");
    }

    #[test]
    fn automount_false_on_the_pod_or_the_account_mounts_nothing() {
        let mut p = pod(json!({"automountServiceAccountToken": false, "containers": [{"name": "a", "image": "x"}]}));
        admit(&mut p, "ns", Some(&sa())).unwrap();
        assert!(p["spec"].get("volumes").is_none());
        assert!(p["spec"]["containers"][0].get("volumeMounts").is_none());
        assert_eq!(p["spec"]["serviceAccountName"], "default");

        let mut off = sa();
        off["automountServiceAccountToken"] = json!(false);
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        admit(&mut p, "ns", Some(&off)).unwrap();
        assert!(p["spec"].get("volumes").is_none());

        // The pod's word wins over the account's.
        let mut p = pod(json!({"automountServiceAccountToken": true, "containers": [{"name": "a", "image": "x"}]}));
        admit(&mut p, "ns", Some(&off)).unwrap();
        assert_eq!(token_volumes(&p).len(), 1);
    }

    #[test]
    fn a_named_account_is_looked_up_and_its_pull_secrets_copied() {
        let mut p = pod(json!({"serviceAccount": "builder", "containers": [{"name": "a", "image": "x"}]}));
        assert_eq!(service_account_to_look_up(&p).as_deref(), Some("builder"), "the deprecated alias names it too");
        let builder = json!({"metadata": {"name": "builder"}, "imagePullSecrets": [{"name": "regcred"}]});
        admit(&mut p, "ns", Some(&builder)).unwrap();
        assert_eq!(p["spec"]["serviceAccountName"], "builder");
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));

        let mut p = pod(json!({"serviceAccountName": "builder", "imagePullSecrets": [{"name": "mine"}], "containers": [{"name": "a", "image": "x"}]}));
        admit(&mut p, "ns", Some(&builder)).unwrap();
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "mine"}]), "the pod's own win");
    }

    #[test]
    fn a_missing_account_refuses_the_pod() {
        let mut p = pod(json!({"serviceAccountName": "ghost", "containers": [{"name": "a", "image": "x"}]}));
        let before = p.clone();
        let err = admit(&mut p, "ns", None).unwrap_err();
        assert_eq!(err.to_string(), "error looking up service account ns/ghost: serviceaccount \"ghost\" not found");
        assert_eq!(p, before);
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        assert_eq!(admit(&mut p, "ns", None).unwrap_err(), ServiceAccountError::NotFound { namespace: "ns".into(), name: "default".into() });
    }

    #[test]
    fn mirror_pods_are_left_alone_but_may_not_reference_credentials() {
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        p["metadata"]["annotations"] = json!({MIRROR_ANNOTATION: "abc"});
        assert_eq!(service_account_to_look_up(&p), None);
        let before = p.clone();
        admit(&mut p, "ns", None).unwrap();
        assert_eq!(p, before, "no service account, no volume");

        let mut named = before.clone();
        named["spec"]["serviceAccountName"] = json!("default");
        assert_eq!(admit(&mut named, "ns", None).unwrap_err(), ServiceAccountError::MirrorServiceAccount);
        let mut secret = before.clone();
        secret["spec"]["containers"][0]["env"] = json!([{"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
        assert_eq!(admit(&mut secret, "ns", None).unwrap_err(), ServiceAccountError::MirrorSecrets);
        let mut projected = before.clone();
        projected["spec"]["volumes"] = json!([{"name": "t", "projected": token_volume_source()}]);
        assert_eq!(admit(&mut projected, "ns", None).unwrap_err(), ServiceAccountError::MirrorTokenProjection);
        let mut config = before;
        config["spec"]["volumes"] = json!([{"name": "c", "configMap": {"name": "c"}}]);
        admit(&mut config, "ns", None).unwrap();
    }
}
