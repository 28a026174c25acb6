//! Import for air-gapped machines: an OCI image layout (a directory or a tar of one) or a
//! `docker save` tar becomes image records in the store, exactly as if pulled. Every blob
//! is verified against its descriptor (or, for `docker save`, hashed here and given an OCI
//! manifest), every layer is unpacked and its diffID checked against the config, and the
//! records are written last, so a failed import leaves no record (only blobs for gc).
//!
//! A tar is extracted first into a temp dir under the store's `tmp/`, entry by entry:
//! absolute paths and `..` are refused, links and special files are never created, so a
//! hostile archive cannot write outside that dir.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::digest::{Digest, DigestWriter};
use crate::reference::{Reference, ReferenceError};
use crate::registry::manifest::{self, Kind, ManifestError, Platform, OCI_MANIFEST};
use crate::store::{ImageRecord, Store, StoreError};

/// Manifests, indexes and configs larger than this are refused (registries cap them lower).
const MAX_JSON: u64 = 16 << 20;
/// Nested indexes deeper than this are refused.
const MAX_DEPTH: usize = 4;
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// What containerd and Docker 25+ put next to a bare-tag `ref.name`: the full name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("import {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("import {0}: neither an oci image layout (oci-layout, index.json) nor a docker save archive (manifest.json)")]
    Unrecognised(String),
    #[error("import {path}: {what}")]
    Invalid { path: String, what: String },
    #[error("import {path}: not valid json: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("import {archive}: refusing unsafe entry {entry:?} (absolute path or ..)")]
    UnsafeEntry { archive: String, entry: String },
    #[error("import {path}: blob {digest} is missing")]
    MissingBlob { path: String, digest: Digest },
    #[error("import {path}: blob {digest} does not match: expected {expected_size} bytes, got {actual_size} bytes with digest {actual}")]
    Mismatch { path: String, digest: Digest, expected_size: u64, actual: Digest, actual_size: u64 },
    #[error("import {path}: the image is tagged only {tag:?}, not with a full reference: give a name for it")]
    NeedsName { path: String, tag: String },
    #[error("import {path}: the image has no name: give a name for it")]
    Unnamed { path: String },
    #[error("import {path}: holds {count} images, so a single name cannot name them")]
    NameAmbiguous { path: String, count: usize },
    #[error("import {path}: {source}")]
    Reference { path: String, source: ReferenceError },
    #[error("import {path}: layer {layer}: diff id {actual} does not match the config's rootfs.diff_ids[{index}] {expected}")]
    DiffId { path: String, layer: Digest, index: usize, expected: Digest, actual: Digest },
    #[error("import {path}: manifest has {layers} layers but the config has {diff_ids} diff ids")]
    LayerCount { path: String, layers: usize, diff_ids: usize },
    #[error("import {path}: {source}")]
    Manifest { path: String, source: Box<ManifestError> },
    #[error("import {path}: {source}")]
    Store { path: String, source: StoreError },
}

/// Imports the image(s) at `path` (a layout dir, a layout tar or a `docker save` tar) into
/// `store`, choosing `platform` from any index. `name` names the image when the source
/// only tags it (`latest`) or not at all; it must be given then, and it replaces the
/// source's names when given. Returns the records written.
pub fn import(store: &Store, path: &Path, platform: &Platform, name: Option<&str>) -> Result<Vec<ImageRecord>, ImportError> {
    let meta = fs::metadata(path).map_err(io_err(&path.display().to_string()))?;
    if meta.is_dir() {
        let src = Source { dir: path.to_path_buf(), label: format!("{}/", path.display()) };
        return import_dir(store, &src, platform, name);
    }
    let tmp = TempDir(store.temp_path("import"));
    extract_tar(path, &tmp.0)?;
    let src = Source { dir: tmp.0.clone(), label: format!("{}:", path.display()) };
    import_dir(store, &src, platform, name)
}

/// Where the files are, and how errors name them (the user's path, not the temp dir).
struct Source {
    dir: PathBuf,
    label: String,
}

impl Source {
    fn show(&self, rel: &str) -> String {
        format!("{}{rel}", self.label)
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> ImportError + '_ {
    move |source| ImportError::Io { path: path.to_string(), source }
}

fn store_err(path: &str) -> impl FnOnce(StoreError) -> ImportError + '_ {
    move |source| ImportError::Store { path: path.to_string(), source }
}

fn import_dir(store: &Store, src: &Source, platform: &Platform, name: Option<&str>) -> Result<Vec<ImageRecord>, ImportError> {
    let images = if src.dir.join("oci-layout").is_file() && src.dir.join("index.json").is_file() {
        oci_images(store, src, platform, name)?
    } else if src.dir.join("manifest.json").is_file() {
        docker_images(store, src, name)?
    } else {
        return Err(ImportError::Unrecognised(src.label.trim_end_matches(['/', ':']).to_string()));
    };
    // Only now, with every image verified and unpacked, do the names appear.
    for record in &images {
        store.put_record(record).map_err(store_err(&src.label))?;
    }
    Ok(images)
}

// ---- files inside the source -----------------------------------------------------------

/// A relative path from a manifest, checked to stay inside the source.
fn inside(src: &Source, rel: &str) -> Result<PathBuf, ImportError> {
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(ImportError::Invalid { path: src.show("manifest.json"), what: format!("unsafe file name {rel:?}") });
    }
    Ok(src.dir.join(p))
}

/// Opens a regular file of the source (never through a symlink).
fn open_regular(path: &Path, shown: &str) -> Result<Option<(File, u64)>, ImportError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(shown)(e)),
        Ok(m) if !m.file_type().is_file() => {
            Err(ImportError::Invalid { path: shown.to_string(), what: "not a regular file".into() })
        }
        Ok(m) => Ok(Some((File::open(path).map_err(io_err(shown))?, m.len()))),
    }
}

fn read_json_file(path: &Path, shown: &str) -> Result<Vec<u8>, ImportError> {
    let Some((f, len)) = open_regular(path, shown)? else {
        return Err(ImportError::Invalid { path: shown.to_string(), what: "missing".into() });
    };
    if len > MAX_JSON {
        return Err(ImportError::Invalid { path: shown.to_string(), what: format!("{len} bytes is too large") });
    }
    let mut data = Vec::new();
    f.take(MAX_JSON).read_to_end(&mut data).map_err(io_err(shown))?;
    Ok(data)
}

fn parse_json<'a, T: Deserialize<'a>>(data: &'a [u8], shown: &str) -> Result<T, ImportError> {
    serde_json::from_slice(data).map_err(|source| ImportError::Json { path: shown.to_string(), source })
}

// ---- OCI image layout ------------------------------------------------------------------

#[derive(Deserialize)]
struct LayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

#[derive(Deserialize, Clone)]
struct Desc {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct IndexFile {
    #[serde(default)]
    manifests: Vec<Desc>,
}

#[derive(Deserialize)]
struct ManifestFile {
    config: Desc,
    #[serde(default)]
    layers: Vec<Desc>,
}

#[derive(Deserialize)]
struct ConfigFile {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

fn oci_images(store: &Store, src: &Source, platform: &Platform, name: Option<&str>) -> Result<Vec<ImageRecord>, ImportError> {
    let shown = src.show("oci-layout");
    let layout: LayoutFile = parse_json(&read_json_file(&src.dir.join("oci-layout"), &shown)?, &shown)?;
    if layout.version != "1.0.0" {
        return Err(ImportError::Invalid {
            path: shown,
            what: format!("imageLayoutVersion {:?} is not supported (only 1.0.0)", layout.version),
        });
    }
    let shown = src.show("index.json");
    let index: IndexFile = parse_json(&read_json_file(&src.dir.join("index.json"), &shown)?, &shown)?;
    if index.manifests.is_empty() {
        return Err(ImportError::Invalid { path: shown, what: "lists no images".into() });
    }
    if name.is_some() && index.manifests.len() > 1 {
        return Err(ImportError::NameAmbiguous { path: shown, count: index.manifests.len() });
    }
    let mut out = Vec::new();
    for desc in &index.manifests {
        let full = match name {
            Some(n) => n.to_string(),
            None => oci_name(desc, &shown)?,
        };
        let reference = Reference::parse(&full).map_err(|source| ImportError::Reference { path: shown.clone(), source })?;
        let (manifest, config, layers) = resolve(store, src, desc, platform, 0)?;
        out.push(ImageRecord { name: reference.to_string(), manifest, config, layers });
    }
    Ok(out)
}

/// The full name an index.json entry gives its image. A `ref.name` without `/`, `:` or `@`
/// is only a tag (the layout spec allows both), unless containerd's annotation names it.
fn oci_name(desc: &Desc, shown: &str) -> Result<String, ImportError> {
    if let Some(n) = desc.annotations.get(CONTAINERD_NAME) {
        return Ok(n.clone());
    }
    match desc.annotations.get(REF_NAME) {
        Some(n) if n.contains(['/', ':', '@']) => Ok(n.clone()),
        Some(tag) => Err(ImportError::NeedsName { path: shown.to_string(), tag: tag.clone() }),
        None => Err(ImportError::Unnamed { path: shown.to_string() }),
    }
}

fn desc_digest(desc: &Desc, shown: &str) -> Result<Digest, ImportError> {
    desc.digest.parse().map_err(|e| ImportError::Invalid { path: shown.to_string(), what: format!("descriptor: {e}") })
}

fn blob_rel(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Reads a small blob (index, manifest, config) of the layout, verified, and stores it.
fn small_blob(store: &Store, src: &Source, digest: &Digest, size: u64) -> Result<Vec<u8>, ImportError> {
    let rel = blob_rel(digest);
    let shown = src.show(&rel);
    if size > MAX_JSON {
        return Err(ImportError::Invalid { path: shown, what: format!("descriptor size {size} is too large") });
    }
    let Some((f, _)) = open_regular(&src.dir.join(&rel), &shown)? else {
        return Err(ImportError::MissingBlob { path: shown, digest: digest.clone() });
    };
    let mut data = Vec::new();
    f.take(size + 1).read_to_end(&mut data).map_err(io_err(&shown))?;
    let actual = Digest::of(&data);
    if actual != *digest || data.len() as u64 != size {
        return Err(ImportError::Mismatch {
            path: shown,
            digest: digest.clone(),
            expected_size: size,
            actual,
            actual_size: data.len() as u64,
        });
    }
    store.ingest_bytes(&data).map_err(store_err(&shown))?;
    Ok(data)
}

/// Streams a layer blob of the layout into the store, verified there.
fn layer_blob(store: &Store, src: &Source, digest: &Digest, size: u64) -> Result<(), ImportError> {
    let rel = blob_rel(digest);
    let shown = src.show(&rel);
    let Some((f, _)) = open_regular(&src.dir.join(&rel), &shown)? else {
        return Err(ImportError::MissingBlob { path: shown, digest: digest.clone() });
    };
    store.ingest(digest, size, io::BufReader::with_capacity(1 << 20, f)).map(drop).map_err(|e| match e {
        StoreError::Mismatch { expected, expected_size, actual, actual_size } => {
            ImportError::Mismatch { path: shown.clone(), digest: expected, expected_size, actual, actual_size }
        }
        e => store_err(&shown)(e),
    })
}

/// Follows a descriptor (through nested indexes, by platform) to an image manifest;
/// stores and checks everything it names. Returns (manifest, config, layers).
fn resolve(
    store: &Store,
    src: &Source,
    desc: &Desc,
    platform: &Platform,
    depth: usize,
) -> Result<(Digest, Digest, Vec<Digest>), ImportError> {
    let digest = desc_digest(desc, &src.show("index.json"))?;
    let shown = src.show(&blob_rel(&digest));
    if depth > MAX_DEPTH {
        return Err(ImportError::Invalid { path: shown, what: "indexes nested too deep".into() });
    }
    let body = small_blob(store, src, &digest, desc.size)?;
    let kind = manifest::kind(desc.media_type.as_deref(), &body, &digest)
        .map_err(|e| ImportError::Manifest { path: shown.clone(), source: Box::new(e) })?;
    if kind == Kind::Index {
        let chosen = manifest::select_platform(&body, &digest, platform)
            .map_err(|e| ImportError::Manifest { path: shown.clone(), source: Box::new(e) })?;
        let next = Desc {
            media_type: Some(chosen.media_type().to_string()),
            digest: chosen.digest().to_string(),
            size: chosen.size(),
            annotations: HashMap::new(),
        };
        return resolve(store, src, &next, platform, depth + 1);
    }
    let m: ManifestFile = parse_json(&body, &shown)?;
    let config = desc_digest(&m.config, &shown)?;
    let config_body = small_blob(store, src, &config, m.config.size)?;
    let mut layers = Vec::new();
    for l in &m.layers {
        let d = desc_digest(l, &shown)?;
        layer_blob(store, src, &d, l.size)?;
        layers.push((d, l.media_type.clone()));
    }
    let layers = unpack_and_check(store, &src.show(&blob_rel(&config)), &config_body, &layers)?;
    Ok((digest, config, layers))
}

/// Unpacks each stored layer and checks its diffID against the config, in order.
fn unpack_and_check(
    store: &Store,
    config_shown: &str,
    config_body: &[u8],
    layers: &[(Digest, Option<String>)],
) -> Result<Vec<Digest>, ImportError> {
    let config: ConfigFile = parse_json(config_body, config_shown)?;
    if config.rootfs.diff_ids.len() != layers.len() {
        return Err(ImportError::LayerCount {
            path: config_shown.to_string(),
            layers: layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    for (i, ((layer, media_type), want)) in layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let expected: Digest = want.parse().map_err(|e| ImportError::Invalid {
            path: config_shown.to_string(),
            what: format!("rootfs.diff_ids[{i}]: {e}"),
        })?;
        let unpacked = store.unpack_layer(layer, media_type.as_deref()).map_err(store_err(config_shown))?;
        if unpacked.diff_id != expected {
            return Err(ImportError::DiffId {
                path: config_shown.to_string(),
                layer: layer.clone(),
                index: i,
                expected,
                actual: unpacked.diff_id,
            });
        }
    }
    Ok(layers.iter().map(|(d, _)| d.clone()).collect())
}

// ---- docker save -----------------------------------------------------------------------

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn docker_images(store: &Store, src: &Source, name: Option<&str>) -> Result<Vec<ImageRecord>, ImportError> {
    let shown = src.show("manifest.json");
    let entries: Vec<DockerEntry> = parse_json(&read_json_file(&src.dir.join("manifest.json"), &shown)?, &shown)?;
    if entries.is_empty() {
        return Err(ImportError::Invalid { path: shown, what: "lists no images".into() });
    }
    if name.is_some() && entries.len() > 1 {
        return Err(ImportError::NameAmbiguous { path: shown, count: entries.len() });
    }
    let mut out = Vec::new();
    for entry in &entries {
        let names: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => entry.repo_tags.clone().unwrap_or_default(),
        };
        if names.is_empty() {
            return Err(ImportError::Unnamed { path: shown.clone() });
        }
        let refs = names
            .iter()
            .map(|n| Reference::parse(n).map_err(|source| ImportError::Reference { path: shown.clone(), source }))
            .collect::<Result<Vec<_>, _>>()?;

        let config_shown = src.show(&entry.config);
        let config_body = read_json_file(&inside(src, &entry.config)?, &config_shown)?;
        let config = store.ingest_bytes(&config_body).map_err(store_err(&config_shown))?;

        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for rel in &entry.layers {
            let layer_shown = src.show(rel);
            let (digest, size, media_type) = docker_layer(store, &inside(src, rel)?, &layer_shown)?;
            descs.push(serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size}));
            layers.push((digest, Some(media_type.to_string())));
        }
        let layers = unpack_and_check(store, &config_shown, &config_body, &layers)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_body.len()},
            "layers": descs,
        });
        let manifest = store.ingest_bytes(manifest.to_string().as_bytes()).map_err(store_err(&shown))?;
        for r in refs {
            out.push(ImageRecord { name: r.to_string(), manifest: manifest.clone(), config: config.clone(), layers: layers.clone() });
        }
    }
    Ok(out)
}

/// Hashes a `docker save` layer file (no digest is given for it), then stores it.
fn docker_layer(store: &Store, path: &Path, shown: &str) -> Result<(Digest, u64, &'static str), ImportError> {
    let Some((mut f, _)) = open_regular(path, shown)? else {
        return Err(ImportError::Invalid { path: shown.to_string(), what: "missing".into() });
    };
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io_err(shown))?;
    let media_type = match &magic[..n] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    };
    let (f, _) = open_regular(path, shown)?.ok_or_else(|| ImportError::Invalid { path: shown.to_string(), what: "missing".into() })?;
    let mut w = DigestWriter::new(io::sink());
    io::copy(&mut io::BufReader::with_capacity(1 << 20, f), &mut w).map_err(io_err(shown))?;
    let (digest, size, _) = w.finish();
    let (f, _) = open_regular(path, shown)?.ok_or_else(|| ImportError::Invalid { path: shown.to_string(), what: "missing".into() })?;
    store.ingest(&digest, size, io::BufReader::with_capacity(1 << 20, f)).map_err(store_err(shown))?;
    Ok((digest, size, media_type))
}

// ---- tar extraction --------------------------------------------------------------------

/// Extracts regular files and directories of `archive` into `dest`, refusing any entry
/// that could land outside it. Links and special files are skipped: nothing this import
/// reads needs one (Docker 25+ adds compatibility symlinks whose targets it lists itself).
fn extract_tar(archive: &Path, dest: &Path) -> Result<(), ImportError> {
    let shown = archive.display().to_string();
    let f = File::open(archive).map_err(io_err(&shown))?;
    fs::create_dir_all(dest).map_err(io_err(&shown))?;
    let mut ar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    for entry in ar.entries().map_err(io_err(&shown))? {
        let mut entry = entry.map_err(io_err(&shown))?;
        let raw = entry.path_bytes().into_owned();
        let rel = String::from_utf8_lossy(&raw).into_owned();
        let path = entry.path().map_err(io_err(&shown))?.into_owned();
        if !path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(ImportError::UnsafeEntry { archive: shown, entry: rel });
        }
        let target = dest.join(&path);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(io_err(&shown))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io_err(&shown))?;
            }
            // The dir holds only what this loop made: dirs and regular files, no links.
            let mut out = File::create(&target).map_err(io_err(&shown))?;
            io::copy(&mut entry, &mut out).map_err(|source| ImportError::Io { path: format!("{shown}:{rel}"), source })?;
        } else {
            tracing::debug!(archive = %shown, entry = %rel, "import: skipping a non-regular tar entry");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(annotations: &[(&str, &str)]) -> Desc {
        Desc {
            media_type: None,
            digest: String::new(),
            size: 0,
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn index_names_are_full_references_or_need_a_name() {
        assert_eq!(oci_name(&desc(&[(REF_NAME, "busybox:1.36")]), "i").unwrap(), "busybox:1.36");
        assert_eq!(oci_name(&desc(&[(REF_NAME, "ghcr.io/o/a")]), "i").unwrap(), "ghcr.io/o/a");
        let both = desc(&[(REF_NAME, "latest"), (CONTAINERD_NAME, "docker.io/library/alpine:3")]);
        assert_eq!(oci_name(&both, "i").unwrap(), "docker.io/library/alpine:3");
        let err = oci_name(&desc(&[(REF_NAME, "latest")]), "x/index.json").unwrap_err();
        assert_eq!(err.to_string(), "import x/index.json: the image is tagged only \"latest\", not with a full reference: give a name for it");
        assert!(matches!(oci_name(&desc(&[]), "i"), Err(ImportError::Unnamed { .. })));
    }

    #[test]
    fn manifest_file_names_must_stay_inside() {
        let src = Source { dir: PathBuf::from("/src"), label: "a.tar:".into() };
        assert_eq!(inside(&src, "abc/layer.tar").unwrap(), PathBuf::from("/src/abc/layer.tar"));
        for bad in ["", "../x", "/etc/passwd", "a/../../x"] {
            assert!(matches!(inside(&src, bad), Err(ImportError::Invalid { .. })), "{bad:?}");
        }
    }
}
