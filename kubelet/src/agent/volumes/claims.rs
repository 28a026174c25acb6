//! persistentVolumeClaim volumes: the claim must be bound, and its PersistentVolume must be
//! one this node can use directly (a hostPath or local volume), whose path is then mounted.

use std::path::PathBuf;

use super::host_path::{self, HostPathError};
use super::objects::{Objects, ObjectsError};

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("persistentvolumeclaim {0:?} not found")]
    ClaimNotFound(String),
    #[error(
        "PVC {namespace}/{name} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume:?})"
    )]
    NotBound {
        namespace: String,
        name: String,
        phase: String,
        volume: String,
    },
    #[error("persistentvolume {0:?} not found")]
    VolumeNotFound(String),
    #[error(
        "persistentvolume {0:?} has neither a hostPath nor a local source: only those are supported by this kubelet"
    )]
    Unsupported(String),
    #[error("persistentvolume {volume:?}: {source}")]
    HostPath {
        volume: String,
        source: HostPathError,
    },
    #[error(transparent)]
    Objects(#[from] ObjectsError),
}

/// The host path behind claim `name` in `namespace`.
pub async fn host_path(
    objects: &dyn Objects,
    namespace: &str,
    name: &str,
) -> Result<PathBuf, ClaimError> {
    let claim = objects
        .persistent_volume_claim(namespace, name)
        .await?
        .ok_or_else(|| ClaimError::ClaimNotFound(name.to_string()))?;
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume.is_empty() {
        return Err(ClaimError::NotBound {
            namespace: namespace.to_string(),
            name: name.to_string(),
            phase,
            volume,
        });
    }
    let pv = objects
        .persistent_volume(&volume)
        .await?
        .ok_or_else(|| ClaimError::VolumeNotFound(volume.clone()))?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(h) = spec.host_path {
        let path = PathBuf::from(&h.path);
        host_path::check(&path, h.type_.as_deref().unwrap_or("")).map_err(|source| {
            ClaimError::HostPath {
                volume: volume.clone(),
                source,
            }
        })?;
        return Ok(path);
    }
    if let Some(local) = spec.local {
        return Ok(PathBuf::from(local.path));
    }
    Err(ClaimError::Unsupported(volume))
}
