//! A minimal local-path provisioner: a Pending claim of storage class `local-path` that a pod
//! on this node uses gets a hostPath PersistentVolume under a directory of this node, pinned
//! to the node and bound to the claim (the binding the PV controller would do); a volume of
//! ours whose claim is gone is deleted with its directory. It waits for a consumer, like
//! WaitForFirstConsumer, so each claim is provisioned by the node its pod runs on.
//!
//! It needs a client allowed to create PersistentVolumes and update claims, which a node's
//! own credentials are not (the Node authorizer lets kubelets only read them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Pod, VolumeNodeAffinity,
};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// The storage class this provisioner serves.
pub const STORAGE_CLASS: &str = "local-path";
/// Annotation on our volumes: the node whose directory holds the data.
pub const NODE_ANNOTATION: &str = "local-path.kubelet-rs/node";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("removing the data of persistentvolume {volume} at {path}: {source}")]
    Remove {
        volume: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ProvisionError {
    let what = what.into();
    move |source| ProvisionError::Api { what, source }
}

/// The claims (`namespace`, `name`) the pods use.
pub fn claims_of(pods: &[Pod]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for pod in pods {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if let Some(c) = &volume.persistent_volume_claim {
                out.insert((namespace.clone(), c.claim_name.clone()));
            }
        }
    }
    out
}

/// The volume to create for `claim` on `node` with data under `base`, if the claim is ours
/// and waiting for one.
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    node: &str,
    base: &Path,
) -> Option<PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    let pending = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == "Pending");
    if spec.storage_class_name.as_deref() != Some(STORAGE_CLASS)
        || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || !pending
    {
        return None;
    }
    let namespace = claim.metadata.namespace.clone()?;
    let name = claim.metadata.name.clone()?;
    let uid = claim.metadata.uid.clone()?;
    let mut pv = PersistentVolume::default();
    pv.metadata.name = Some(format!("pvc-{uid}"));
    pv.metadata.annotations = Some([(NODE_ANNOTATION.to_string(), node.to_string())].into());
    pv.spec = Some(PersistentVolumeSpec {
        access_modes: spec.access_modes.clone(),
        capacity: spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| [("storage".to_string(), q.clone())].into()),
        host_path: Some(HostPathVolumeSource {
            path: base
                .join(format!("{namespace}_{name}_{uid}"))
                .to_string_lossy()
                .into_owned(),
            type_: Some("DirectoryOrCreate".into()),
        }),
        claim_ref: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: Some(namespace),
            name: Some(name),
            uid: Some(uid),
            ..Default::default()
        }),
        persistent_volume_reclaim_policy: Some("Delete".into()),
        storage_class_name: Some(STORAGE_CLASS.into()),
        volume_mode: spec.volume_mode.clone(),
        node_affinity: Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: HOSTNAME_LABEL.into(),
                        operator: "In".into(),
                        values: Some(vec![node.to_string()]),
                    }]),
                    ..Default::default()
                }],
            }),
        }),
        ..Default::default()
    });
    Some(pv)
}

/// The data directory of one of our volumes on `node`, when it is safe to delete: below
/// `base`, and the volume's claim (by uid) no longer exists.
pub fn released_dir(
    pv: &PersistentVolume,
    node: &str,
    base: &Path,
    claim_exists: bool,
) -> Option<PathBuf> {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_ANNOTATION))
        .is_some_and(|n| n == node);
    let spec = pv.spec.as_ref()?;
    if !ours || claim_exists || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete") {
        return None;
    }
    let path = PathBuf::from(&spec.host_path.as_ref()?.path);
    (path.parent() == Some(base)).then_some(path)
}

/// The provisioner of one node.
pub struct Provisioner {
    client: Client,
    node: String,
    base: PathBuf,
}

impl Provisioner {
    /// `client` must be allowed to create PVs and update claims; `base` holds the data.
    pub fn new(client: Client, node: impl Into<String>, base: impl Into<PathBuf>) -> Self {
        Self {
            client,
            node: node.into(),
            base: base.into(),
        }
    }

    /// Sync every `period`, logging failures, until the task is dropped.
    pub async fn run(&self, period: Duration) {
        loop {
            if let Err(e) = self.sync_once().await {
                tracing::warn!("local-path provisioner: {e}");
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Provision and bind the claims of this node's pods; delete released volumes.
    pub async fn sync_once(&self) -> Result<(), ProvisionError> {
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default().fields(&format!("spec.nodeName={}", self.node)))
            .await
            .map_err(api("listing this node's pods"))?;
        for (namespace, name) in claims_of(&pods.items) {
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(self.client.clone(), &namespace);
            let Some(claim) = claims.get_opt(&name).await.map_err(api(format!(
                "getting persistentvolumeclaim {namespace}/{name}"
            )))?
            else {
                continue;
            };
            if let Some(pv) = volume_for(&claim, &self.node, &self.base) {
                self.provision(&claims, &claim, pv).await?;
            }
        }
        self.delete_released().await
    }

    async fn provision(
        &self,
        claims: &Api<PersistentVolumeClaim>,
        claim: &PersistentVolumeClaim,
        pv: PersistentVolume,
    ) -> Result<(), ProvisionError> {
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        let capacity = pv.spec.as_ref().and_then(|s| s.capacity.clone());
        let modes = pv.spec.as_ref().and_then(|s| s.access_modes.clone());
        match volumes.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                tracing::info!(volume = %pv_name, claim = %claim_name, "provisioned a local-path volume")
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api(format!("creating persistentvolume {pv_name}"))(e)),
        }
        let params = PatchParams::default();
        volumes
            .patch_status(
                &pv_name,
                &params,
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await
            .map_err(api(format!("binding persistentvolume {pv_name}")))?;
        let spec = json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"}}, "spec": {"volumeName": pv_name}});
        claims
            .patch(&claim_name, &params, &Patch::Merge(spec))
            .await
            .map_err(api(format!("binding persistentvolumeclaim {claim_name}")))?;
        let status =
            json!({"status": {"phase": "Bound", "capacity": capacity, "accessModes": modes}});
        claims
            .patch_status(&claim_name, &params, &Patch::Merge(status))
            .await
            .map_err(api(format!("binding persistentvolumeclaim {claim_name}")))?;
        Ok(())
    }

    async fn delete_released(&self) -> Result<(), ProvisionError> {
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        for pv in volumes
            .list(&ListParams::default())
            .await
            .map_err(api("listing persistentvolumes"))?
            .items
        {
            let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
                continue;
            };
            let (Some(namespace), Some(name)) =
                (claim_ref.namespace.as_deref(), claim_ref.name.as_deref())
            else {
                continue;
            };
            // Cheap check first: only our volumes are worth a claim lookup.
            if released_dir(&pv, &self.node, &self.base, false).is_none() {
                continue;
            }
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(self.client.clone(), namespace);
            let claim = claims.get_opt(name).await.map_err(api(format!(
                "getting persistentvolumeclaim {namespace}/{name}"
            )))?;
            let exists = claim.is_some_and(|c| c.metadata.uid == claim_ref.uid);
            let Some(dir) = released_dir(&pv, &self.node, &self.base, exists) else {
                continue;
            };
            let pv_name = pv.metadata.name.clone().unwrap_or_default();
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ProvisionError::Remove {
                        volume: pv_name,
                        path: dir,
                        source,
                    });
                }
            }
            match volumes.delete(&pv_name, &Default::default()).await {
                Ok(_) => tracing::info!(volume = %pv_name, "deleted a released local-path volume"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api(format!("deleting persistentvolume {pv_name}"))(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(class: &str, phase: Option<&str>, volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "c-1"},
            "spec": {"storageClassName": class, "volumeName": volume, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn pending_local_path_claims_get_a_pinned_host_path_volume() {
        let base = Path::new("/var/lib/kubelet-rs/local-path");
        let pv = volume_for(&claim("local-path", Some("Pending"), None), "n1", base).unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-c-1"));
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(
            spec.host_path.as_ref().unwrap().path,
            "/var/lib/kubelet-rs/local-path/ns_data_c-1"
        );
        assert_eq!(spec.claim_ref.as_ref().unwrap().uid.as_deref(), Some("c-1"));
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        let term = &spec
            .node_affinity
            .as_ref()
            .unwrap()
            .required
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        assert_eq!(
            term.match_expressions.as_ref().unwrap()[0]
                .values
                .as_deref(),
            Some(&["n1".to_string()][..])
        );
        assert!(volume_for(&claim("standard", Some("Pending"), None), "n1", base).is_none());
        assert!(volume_for(&claim("local-path", Some("Bound"), Some("pv")), "n1", base).is_none());
        assert!(
            volume_for(
                &claim("local-path", Some("Pending"), Some("pv")),
                "n1",
                base
            )
            .is_none()
        );

        assert_eq!(
            released_dir(&pv, "n1", base, false),
            Some(base.join("ns_data_c-1"))
        );
        assert_eq!(released_dir(&pv, "n1", base, true), None);
        assert_eq!(released_dir(&pv, "n2", base, false), None);
        assert_eq!(
            released_dir(&pv, "n1", Path::new("/elsewhere"), false),
            None
        );
    }

    #[test]
    fn claims_of_pods() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"namespace": "ns"}, "spec": {"containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "e", "emptyDir": {}}]}})).unwrap();
        assert_eq!(
            claims_of(&[pod]),
            [("ns".to_string(), "data".to_string())].into()
        );
    }
}
