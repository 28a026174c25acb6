//! A container's root filesystem: an overlayfs mount of an image's unpacked layers (read-only
//! lowerdirs, topmost first) with a per-container upperdir and workdir, so containers share
//! the layers and each writes only to its own directory. The CRI runtime service mounts one
//! per container and hands it to runtime-rs as `root.path`.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::store::{ImageRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("image {image}: layer {layer} is not unpacked in the store (pull or import it again)")]
    NotUnpacked { image: String, layer: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("image {image}: {count} layers make an overlay option of {len} bytes, more than a mount option page holds")]
    TooManyLayers { image: String, count: usize, len: usize },
    #[error("mount the overlay rootfs at {target}: {source}")]
    Mount { target: PathBuf, source: nix::Error },
    #[error("unmount the rootfs at {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
}

/// Where a mounted rootfs lives: `<dir>/rootfs` (the mount), `<dir>/upper`, `<dir>/work`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    pub dir: PathBuf,
    pub target: PathBuf,
}

/// The overlay mount options for these snapshots (bottom layer first, as images list them).
fn options(lower_bottom_first: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = lower_bottom_first.iter().rev().map(|p| p.display().to_string()).collect();
    format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display())
}

/// Mount `record`'s layers with a fresh writable layer under `dir` (created if missing).
pub fn mount_rootfs(store: &Store, record: &ImageRecord, dir: &Path) -> Result<Rootfs, RootfsError> {
    let mut lower = Vec::with_capacity(record.layers.len());
    for layer in &record.layers {
        let unpacked = store
            .snapshot(layer)?
            .ok_or_else(|| RootfsError::NotUnpacked { image: record.name.clone(), layer: layer.to_string() })?;
        lower.push(unpacked.fs);
    }
    let (upper, work, target) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &target] {
        fs::create_dir_all(d).map_err(|source| RootfsError::Io { path: d.clone(), source })?;
    }
    let data = options(&lower, &upper, &work);
    // mount(2) copies at most one page of options.
    if data.len() >= 4096 {
        return Err(RootfsError::TooManyLayers { image: record.name.clone(), count: lower.len(), len: data.len() });
    }
    mount(Some("overlay"), &target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(|source| RootfsError::Mount { target: target.clone(), source })?;
    Ok(Rootfs { dir: dir.to_path_buf(), target })
}

/// Unmount the rootfs; the upper and work dirs stay until the caller removes `dir`.
pub fn unmount_rootfs(rootfs: &Rootfs) -> Result<(), RootfsError> {
    umount2(&rootfs.target, MntFlags::MNT_DETACH).map_err(|source| RootfsError::Unmount { target: rootfs.target.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_layer_comes_first_in_lowerdir() {
        let got = options(&["/s/a/fs".into(), "/s/b/fs".into()], Path::new("/c/upper"), Path::new("/c/work"));
        assert_eq!(got, "lowerdir=/s/b/fs:/s/a/fs,upperdir=/c/upper,workdir=/c/work");
    }
}
