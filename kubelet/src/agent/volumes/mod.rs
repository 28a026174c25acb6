//! A pod's volumes on this node, laid out as the kubelet does under
//! `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`: set up before its containers
//! start (and again periodically, so configMap, secret, downwardAPI and projected files follow
//! their objects), turned into CRI mounts per container, and torn down when the pod is gone.
//!
//! - `objects` — the API lookups (ConfigMaps, Secrets, Services, tokens, claims) as a trait.
//! - `payload` + `atomic_writer` — API data volumes' files, written atomically.
//! - `host_path`, `claims`, `subpath` — host paths, PVCs, subPath safety.
//! - `mounter` — tmpfs mounts behind a trait; `tokens` — service account token renewal.
//! - `ownership` — the pod's fsGroup on its volumes' files.
//! - `pull_secrets` — image pull credentials from the pod's imagePullSecrets.
//! - `provisioner` — a minimal local-path provisioner (needs a client that may create PVs).

pub mod atomic_writer;
pub mod claims;
pub mod host_path;
pub mod mounter;
pub mod objects;
pub mod ownership;
pub mod payload;
pub mod provisioner;
pub mod pull_secrets;
pub mod subpath;
pub mod tokens;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::agent::env::EnvContext;
use crate::agent::quantity::{self, QuantityError};
use crate::agent::expand::expand_with;
use atomic_writer::AtomicWriteError;
use claims::ClaimError;
use host_path::HostPathError;
use mounter::{MountError, Mounter};
use objects::Objects;
use payload::{PayloadError, Sources};
use subpath::SubPathError;
use tokens::TokenCache;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// One volume could not be set up; the message is the upstream FailedMount event's.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    SetUp { volume: String, source: SetUpError },
    #[error("pod {0:?} has no uid")]
    NoUid(String),
    #[error(
        "volumeMount {mount:?} of container {container:?} refers to volume {volume:?}, which the pod does not have"
    )]
    NoVolume {
        mount: String,
        container: String,
        volume: String,
    },
    #[error("volume {volume:?} of pod {pod:?} is not set up yet")]
    NotSetUp { volume: String, pod: String },
    #[error(
        "failed to prepare subPath for volumeMount {mount:?} of container {container:?}: {source}"
    )]
    SubPath {
        mount: String,
        container: String,
        source: SubPathError,
    },
    #[error("removing {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// Why one volume could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Ownership(#[from] ownership::OwnershipError),
    #[error("sizeLimit: {0}")]
    SizeLimit(#[from] QuantityError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("volume type {0} is not supported by this kubelet")]
    Unsupported(String),
}

/// Where a set-up volume is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostVolume {
    path: PathBuf,
    /// API data (configMap, secret, downwardAPI, projected) and read-only claims are always
    /// mounted read-only, whatever the volumeMount says.
    force_read_only: bool,
}

/// The volumes of the pods on this node.
pub struct VolumeManager {
    root: PathBuf,
    objects: Arc<dyn Objects>,
    mounter: Arc<dyn Mounter>,
    tokens: TokenCache,
    allocatable: RwLock<BTreeMap<String, Quantity>>,
    volumes: Mutex<HashMap<String, BTreeMap<String, HostVolume>>>,
    /// One setup at a time per pod: the periodic refresh and a container start may overlap.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl VolumeManager {
    /// Volumes under `root` (the kubelet's root dir, `/var/lib/kubelet`).
    pub fn new(
        root: impl Into<PathBuf>,
        objects: Arc<dyn Objects>,
        mounter: Arc<dyn Mounter>,
    ) -> Self {
        Self {
            root: root.into(),
            objects,
            mounter,
            tokens: TokenCache::default(),
            allocatable: RwLock::default(),
            volumes: Mutex::default(),
            locks: Mutex::default(),
        }
    }

    /// The node's allocatable resources, for downwardAPI `limits.*` of containers without limits.
    pub fn set_node_allocatable(&self, allocatable: BTreeMap<String, Quantity>) {
        *self.allocatable.write().unwrap() = allocatable;
    }

    /// `<root>/pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    /// `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`.
    pub fn volume_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(uid)
            .join("volumes")
            .join(format!("kubernetes.io~{plugin}"))
            .join(name)
    }

    /// Set up every volume of `pod` (idempotent: unchanged files are not rewritten). Every
    /// volume is tried; the first failure is returned.
    pub async fn setup(&self, pod: &Pod) -> Result<(), VolumeError> {
        let uid = pod_uid(pod)?;
        let lock = self
            .locks
            .lock()
            .unwrap()
            .entry(uid.clone())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let ctx = EnvContext {
            node_allocatable: self.allocatable.read().unwrap().clone(),
            ..Default::default()
        };
        let sources = Sources {
            objects: self.objects.as_ref(),
            tokens: &self.tokens,
            ctx: &ctx,
            now: k8s_openapi::jiff::Timestamp::now().as_second(),
        };
        let mut first_error = None;
        let mut ready = BTreeMap::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            match self.setup_volume(pod, &uid, volume, &sources).await {
                Ok(host) => {
                    ready.insert(volume.name.clone(), host);
                }
                Err(source) => {
                    tracing::debug!(pod = %uid, volume = %volume.name, "volume setup failed: {source}");
                    first_error.get_or_insert(VolumeError::SetUp {
                        volume: volume.name.clone(),
                        source,
                    });
                }
            }
        }
        self.volumes.lock().unwrap().insert(uid, ready);
        first_error.map_or(Ok(()), Err)
    }

    async fn setup_volume(
        &self,
        pod: &Pod,
        uid: &str,
        volume: &Volume,
        s: &Sources<'_>,
    ) -> Result<HostVolume, SetUpError> {
        let name = &volume.name;
        let writable = |path| HostVolume {
            path,
            force_read_only: false,
        };
        let api_data = |path| HostVolume {
            path,
            force_read_only: true,
        };
        if let Some(e) = &volume.empty_dir {
            let dir = self.volume_dir(uid, "empty-dir", name);
            let created = ensure_dir(&dir)?;
            match e.medium.as_deref().unwrap_or("") {
                "" => {}
                "Memory" => {
                    let size = e
                        .size_limit
                        .as_ref()
                        .map(|q| quantity::parse(&q.0))
                        .transpose()?
                        .map(|n| n.value().max(0) as u64);
                    self.ensure_tmpfs(&dir, size)?;
                }
                other => return Err(SetUpError::Unsupported(format!("emptyDir medium {other}"))),
            }
            if created {
                // emptyDirs are world-writable, as upstream: containers run as any user.
                set_mode(&dir, 0o777)?;
                if let Some(gid) = fs_group(pod) {
                    ownership::apply(&dir, gid, false)?;
                }
            }
            return Ok(writable(dir));
        }
        if let Some(h) = &volume.host_path {
            let path = PathBuf::from(&h.path);
            host_path::check(&path, h.type_.as_deref().unwrap_or(""))?;
            return Ok(writable(path));
        }
        if let Some(c) = &volume.config_map {
            let files = payload::config_map(pod, c, s).await?;
            return self
                .write_data(pod, uid, "configmap", name, &files, false)
                .map(api_data);
        }
        if let Some(secret) = &volume.secret {
            let files = payload::secret(pod, secret, s).await?;
            return self
                .write_data(pod, uid, "secret", name, &files, true)
                .map(api_data);
        }
        if let Some(d) = &volume.downward_api {
            let files = payload::downward_api(pod, d, s)?;
            return self
                .write_data(pod, uid, "downward-api", name, &files, true)
                .map(api_data);
        }
        if let Some(p) = &volume.projected {
            let files = payload::projected(pod, p, s).await?;
            return self
                .write_data(pod, uid, "projected", name, &files, true)
                .map(api_data);
        }
        if let Some(c) = &volume.persistent_volume_claim {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let path = claims::host_path(self.objects.as_ref(), namespace, &c.claim_name).await?;
            return Ok(HostVolume {
                path,
                force_read_only: c.read_only == Some(true),
            });
        }
        Err(SetUpError::Unsupported(volume_kind(volume)))
    }

    /// Write an API data volume; secrets, downwardAPI and projected volumes live on tmpfs so
    /// their contents never reach the node's disk.
    fn write_data(
        &self,
        pod: &Pod,
        uid: &str,
        plugin: &str,
        name: &str,
        files: &atomic_writer::Payload,
        memory: bool,
    ) -> Result<PathBuf, SetUpError> {
        let dir = self.volume_dir(uid, plugin, name);
        let created = ensure_dir(&dir)?;
        if memory {
            self.ensure_tmpfs(&dir, None)?;
        }
        let group = fs_group(pod);
        if let (true, Some(gid)) = (created, group) {
            ownership::apply(&dir, gid, true)?;
        }
        atomic_writer::write(&dir, files, group)?;
        Ok(dir)
    }

    fn ensure_tmpfs(&self, dir: &Path, size: Option<u64>) -> Result<(), MountError> {
        if !mounter::is_mounted(self.mounter.as_ref(), dir)? {
            self.mounter.mount_tmpfs(dir, size)?;
        }
        Ok(())
    }

    /// The CRI mounts of `container`'s volumeMounts. `env` is the container's resolved
    /// environment, for subPathExpr. Needs a successful [`setup`](Self::setup) first.
    pub fn mounts(
        &self,
        pod: &Pod,
        container: &Container,
        env: &[(String, String)],
    ) -> Result<Vec<cri::Mount>, VolumeError> {
        let uid = pod_uid(pod)?;
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let ready = self
            .volumes
            .lock()
            .unwrap()
            .get(&uid)
            .cloned()
            .unwrap_or_default();
        let declared: HashSet<&str> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .map(|v| v.name.as_str())
            .collect();
        let mut out = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            if !declared.contains(vm.name.as_str()) {
                return Err(VolumeError::NoVolume {
                    mount: vm.mount_path.clone(),
                    container: container.name.clone(),
                    volume: vm.name.clone(),
                });
            }
            let volume = ready.get(&vm.name).ok_or_else(|| VolumeError::NotSetUp {
                volume: vm.name.clone(),
                pod: pod_name.clone(),
            })?;
            let sub = match (vm.sub_path_expr.as_deref(), vm.sub_path.as_deref()) {
                (Some(expr), _) if !expr.is_empty() => expand_with(expr, env),
                (_, Some(sub)) => sub.to_string(),
                _ => String::new(),
            };
            let host_path = if sub.is_empty() {
                volume.path.clone()
            } else {
                subpath::resolve(&volume.path, &sub).map_err(|source| VolumeError::SubPath {
                    mount: vm.mount_path.clone(),
                    container: container.name.clone(),
                    source,
                })?
            };
            let propagation = match vm.mount_propagation.as_deref() {
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
                _ => cri::MountPropagation::PropagationPrivate,
            };
            let readonly = vm.read_only == Some(true) || volume.force_read_only;
            // recursiveReadOnly: Enabled asks the runtime for it (which fails if it cannot);
            // IfPossible would need the runtime's handler features, so it stays plain.
            let recursive_read_only = readonly
                && vm.recursive_read_only.as_deref() == Some("Enabled")
                && propagation == cri::MountPropagation::PropagationPrivate;
            out.push(cri::Mount {
                container_path: vm.mount_path.clone(),
                host_path: host_path.to_string_lossy().into_owned(),
                readonly,
                recursive_read_only,
                propagation: propagation as i32,
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Unmount and remove everything under `<root>/pods/<uid>` (the whole pod directory).
    /// Nothing is removed while something below is still mounted.
    pub fn teardown(&self, uid: &str) -> Result<(), VolumeError> {
        let dir = self.pod_dir(uid);
        self.tokens.forget_pod(uid);
        self.volumes.lock().unwrap().remove(uid);
        self.locks.lock().unwrap().remove(uid);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        for mount in self.mounter.mounts_under(&dir)? {
            self.mounter.unmount(&mount)?;
        }
        if let Some(still) = self.mounter.mounts_under(&dir)?.into_iter().next() {
            let source = std::io::Error::other(format!("{} is still mounted", still.display()));
            return Err(VolumeError::Remove { path: dir, source });
        }
        fs::remove_dir_all(&dir).map_err(|source| VolumeError::Remove { path: dir, source })
    }

    /// Tear down the directories of pods not in `known` (uids); returns the uids removed.
    /// Failures are logged and retried on the next call.
    pub fn cleanup_orphans(&self, known: &HashSet<String>) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.root.join("pods")) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let Ok(uid) = entry.file_name().into_string() else {
                continue;
            };
            if known.contains(&uid) {
                continue;
            }
            match self.teardown(&uid) {
                Ok(()) => removed.push(uid),
                Err(e) => tracing::warn!(pod = %uid, "cleaning up an orphaned pod directory: {e}"),
            }
        }
        removed
    }
}

/// The pod's fsGroup, which its volumes' files get (hostPath and claims excepted).
fn fs_group(pod: &Pod) -> Option<u32> {
    let gid = pod.spec.as_ref()?.security_context.as_ref()?.fs_group?;
    u32::try_from(gid).ok()
}

fn pod_uid(pod: &Pod) -> Result<String, VolumeError> {
    pod.metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| VolumeError::NoUid(pod.metadata.name.clone().unwrap_or_default()))
}

/// Create `dir` (and parents); true when it did not exist.
fn ensure_dir(dir: &Path) -> Result<bool, SetUpError> {
    if dir.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(dir).map_err(|source| SetUpError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(true)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SetUpError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| SetUpError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The volume source's field name (`iscsi`, `ephemeral`, ...), for the unsupported error.
fn volume_kind(volume: &Volume) -> String {
    serde_json::to_value(volume)
        .ok()
        .and_then(|v| {
            v.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "(none)".into())
}

#[cfg(test)]
mod tests;
