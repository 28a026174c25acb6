//! Static pods: Pod manifests (YAML or JSON, one pod a file) in a folder the agent reads
//! every 20 seconds, as the kubelet's `--pod-manifest-path`. Each runs under the name
//! `<name>-<node>` with a UID that is a hash of the manifest and the node, so an edited
//! manifest makes a new pod; the API server gets a read-only copy (the mirror pod, see
//! [`mirror_of`]). A manifest that cannot be read is reported and skipped, and the pod it
//! held keeps running, as upstream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use tokio::sync::mpsc;

use super::{HASH_ANNOTATION, MIRROR_ANNOTATION, PodUpdate, SOURCE_ANNOTATION, Source};

/// How often the folder is read (upstream's fileCheckFrequency).
pub const CHECK_PERIOD: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a Pod manifest: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The static pods in `dir` for node `node`, by file, and the files that could not be read.
pub fn read_dir(dir: &Path, node: &str) -> (BTreeMap<PathBuf, Pod>, Vec<ManifestError>) {
    let mut pods = BTreeMap::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No folder (yet): no static pods.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (pods, errors),
        Err(source) => {
            errors.push(ManifestError::Read { path: dir.to_path_buf(), source });
            return (pods, errors);
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Editors' swap files and hidden files are not manifests, as upstream skips them.
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => match parse(&path, &bytes, node) {
                Ok(pod) => {
                    pods.insert(path, pod);
                }
                Err(e) => errors.push(e),
            },
            Err(source) => errors.push(ManifestError::Read { path, source }),
        }
    }
    (pods, errors)
}

/// One manifest as the static pod the agent runs.
pub fn parse(path: &Path, bytes: &[u8], node: &str) -> Result<Pod, ManifestError> {
    let mut pod: Pod = serde_yaml::from_slice(bytes).map_err(|e| ManifestError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
    let invalid = |message: String| ManifestError::Invalid { path: path.to_path_buf(), message };
    let name = pod.metadata.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| invalid("metadata.name: Required value".into()))?;
    let spec = pod.spec.as_mut().ok_or_else(|| invalid("spec: Required value".into()))?;
    if spec.containers.is_empty() {
        return Err(invalid("spec.containers: Required value".into()));
    }
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        if c.image.as_deref().unwrap_or("").is_empty() {
            return Err(invalid(format!("spec.containers[{}].image: Required value", c.name)));
        }
    }
    let namespace = pod.metadata.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
    let uid = manifest_hash(bytes, node, &namespace, &name);
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata.namespace = Some(namespace);
    pod.metadata.uid = Some(uid.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    annotations.insert(HASH_ANNOTATION.into(), uid);
    default_spec(&mut pod, node);
    Ok(pod)
}

/// What the API server would default, since static pods never pass through it.
fn default_spec(pod: &mut Pod, node: &str) {
    let Some(spec) = pod.spec.as_mut() else { return };
    spec.node_name = Some(node.to_string());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name.get_or_insert_with(|| "default-scheduler".into());
    spec.enable_service_links.get_or_insert(true);
    // Static pods tolerate every NoExecute taint: nothing evicts them (as upstream).
    spec.tolerations.get_or_insert_with(Vec::new).push(Toleration { operator: Some("Exists".into()), effect: Some("NoExecute".into()), ..Default::default() });
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        c.termination_message_path.get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy.get_or_insert_with(|| "File".into());
        let latest = c.image.as_deref().is_some_and(|i| !i.contains('@') && !i.rsplit('/').next().unwrap_or(i).contains(':') || i.ends_with(":latest"));
        c.image_pull_policy.get_or_insert_with(|| if latest { "Always".into() } else { "IfNotPresent".into() });
    }
}

/// FNV-1a of the manifest, the node and the pod's name, as 32 hex digits (a UID's length).
fn manifest_hash(bytes: &[u8], node: &str, namespace: &str, name: &str) -> String {
    let mut parts: [u64; 2] = [0xcbf29ce484222325, 0x84222325cbf29ce4];
    for (i, part) in parts.iter_mut().enumerate() {
        for b in bytes.iter().chain(node.as_bytes()).chain(namespace.as_bytes()).chain(name.as_bytes()).chain(&[i as u8]) {
            *part ^= u64::from(*b);
            *part = part.wrapping_mul(0x100000001b3);
        }
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

/// The mirror pod of a static pod: its spec, the mirror annotation and an owner reference to
/// the Node, so deleting the node deletes it and the API server knows it is not to be
/// scheduled or managed.
pub fn mirror_of(pod: &Pod, node_uid: &str) -> Pod {
    let mut mirror = pod.clone();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror.status = None;
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    mirror.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(MIRROR_ANNOTATION.into(), hash);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node,
        uid: node_uid.into(),
        controller: Some(true),
        ..Default::default()
    }]);
    mirror
}

/// Read `dir` now and every [`CHECK_PERIOD`], sending what changed to `out` until it closes.
pub async fn watch(dir: PathBuf, node: String, out: mpsc::Sender<PodUpdate>) {
    let mut known: HashMap<PathBuf, String> = HashMap::new();
    loop {
        let (pods, errors) = read_dir(&dir, &node);
        for e in &errors {
            tracing::warn!("static pods: {e}");
        }
        let unreadable: HashSet<&PathBuf> = errors
            .iter()
            .map(|e| match e {
                ManifestError::Read { path, .. } | ManifestError::Parse { path, .. } | ManifestError::Invalid { path, .. } => path,
            })
            .collect();
        let mut updates = Vec::new();
        let mut next: HashMap<PathBuf, String> = HashMap::new();
        for (path, pod) in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if known.get(&path) != Some(&uid) {
                if let Some(old) = known.get(&path) {
                    updates.push(PodUpdate::Gone(Source::File, old.clone()));
                }
                updates.push(PodUpdate::Set(Source::File, Box::new(pod)));
            }
            next.insert(path, uid);
        }
        for (path, uid) in &known {
            if next.contains_key(path) {
                continue;
            }
            if unreadable.contains(path) {
                // A manifest being rewritten keeps its pod.
                next.insert(path.clone(), uid.clone());
            } else {
                updates.push(PodUpdate::Gone(Source::File, uid.clone()));
            }
        }
        updates.push(PodUpdate::Synced(Source::File, next.values().cloned().collect()));
        known = next;
        for update in updates {
            if out.send(update).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(CHECK_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn a_manifest_becomes_a_pod_named_for_the_node_with_defaults() {
        let pod = parse(Path::new("/m/web.yaml"), MANIFEST.as_bytes(), "node-a").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node-a"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        let annotations = pod.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[SOURCE_ANNOTATION], "file");
        assert_eq!(annotations[HASH_ANNOTATION], uid);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"));
    }

    #[test]
    fn an_edited_manifest_is_a_new_pod_and_the_same_one_is_the_same() {
        let a = parse(Path::new("/m/web.yaml"), MANIFEST.as_bytes(), "n").unwrap();
        let again = parse(Path::new("/m/web.yaml"), MANIFEST.as_bytes(), "n").unwrap();
        let edited = parse(Path::new("/m/web.yaml"), MANIFEST.replace("busybox", "busybox:1.36").as_bytes(), "n").unwrap();
        assert_eq!(a.metadata.uid, again.metadata.uid);
        assert_ne!(a.metadata.uid, edited.metadata.uid);
        assert_eq!(edited.spec.unwrap().containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    }

    #[test]
    fn bad_manifests_are_named() {
        let e = parse(Path::new("/m/x.yaml"), b"kind: Pod\nspec: {containers: []}\n", "n").unwrap_err();
        assert_eq!(e.to_string(), "/m/x.yaml: metadata.name: Required value");
        let e = parse(Path::new("/m/x.yaml"), b"[1, 2]", "n").unwrap_err();
        assert!(e.to_string().starts_with("/m/x.yaml is not a Pod manifest"), "{e}");
    }

    #[test]
    fn the_folder_skips_hidden_files_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), MANIFEST).unwrap();
        std::fs::write(dir.path().join(".web.yaml.swp"), "junk").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: Pod").unwrap();
        let (pods, errors) = read_dir(dir.path(), "n");
        assert_eq!(pods.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(read_dir(&dir.path().join("missing"), "n").0.is_empty());
    }

    #[test]
    fn the_mirror_is_owned_by_the_node_and_marked() {
        let pod = parse(Path::new("/m/web.yaml"), MANIFEST.as_bytes(), "n").unwrap();
        let mirror = mirror_of(&pod, "node-uid");
        assert!(mirror.metadata.uid.is_none());
        assert_eq!(mirror.metadata.annotations.unwrap()[MIRROR_ANNOTATION], pod.metadata.uid.unwrap());
        let owner = &mirror.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("Node", "n", "node-uid"));
    }

    #[tokio::test]
    async fn watching_reports_new_changed_and_removed_manifests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), MANIFEST).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        tokio::time::pause();
        tokio::spawn(watch(dir.path().to_path_buf(), "n".into(), tx));
        let first = rx.recv().await.unwrap();
        let PodUpdate::Set(Source::File, pod) = first else { panic!("{first:?}") };
        let uid = pod.metadata.uid.unwrap();
        assert!(matches!(rx.recv().await.unwrap(), PodUpdate::Synced(Source::File, uids) if uids.contains(&uid)));
        std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
        tokio::time::advance(CHECK_PERIOD).await;
        assert!(matches!(rx.recv().await.unwrap(), PodUpdate::Gone(Source::File, gone) if gone == uid));
        assert!(matches!(rx.recv().await.unwrap(), PodUpdate::Synced(Source::File, uids) if uids.is_empty()));
    }
}
