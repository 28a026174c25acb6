//! Finding the image a CRI `ImageSpec` names, and describing it as a CRI `Image`.
//!
//! The store keeps one record per name; CRI's image is the config digest (its id) with all
//! the names that lead to it, as containerd presents it: `repo_tags` are the tagged names,
//! `repo_digests` are `repo@<manifest digest>` for each name.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use cri_api::runtime::v1::{Image, ImageSpec, Int64Value};
use images::digest::Digest;
use images::pull::record_name;
use images::reference::Reference;
use images::store::{ImageRecord, Store};
use serde_json::json;

use super::image_service::ImageServiceError;

/// An image in the store: its id (the config digest) and every record naming it.
#[derive(Debug, Clone)]
pub(crate) struct FoundImage {
    pub id: Digest,
    pub records: Vec<ImageRecord>,
}

/// The image `spec` names, if it is in the store. Like containerd, an id comes first: the
/// config digest (`sha256:<hex>`, bare hex, or a unique hex prefix), or a manifest digest;
/// then a reference, normalised as Docker does (`busybox` is
/// `docker.io/library/busybox:latest`), where `repo@<digest>` also finds an image pulled by
/// tag. A string that is neither an id nor a valid reference is an error naming it.
pub(crate) fn find(store: &Store, spec: &str) -> Result<Option<FoundImage>, ImageServiceError> {
    let records = store.list_records()?;
    if let Some(id) = match_id(&records, spec) {
        return Ok(Some(group(&records, id)));
    }
    if is_full_hex(spec) {
        // A full id that is not here; not a reference either.
        return Ok(None);
    }
    let reference = Reference::parse(spec)?;
    let name = record_name(&reference);
    let by_name = records.iter().find(|r| r.name == name);
    let by_digest = || {
        let digest = reference.digest()?;
        records.iter().find(|r| &r.manifest == digest && same_repository(r, &reference))
    };
    Ok(by_name.or_else(by_digest).map(|r| group(&records, r.config.clone())))
}

/// Every image in the store, each with its records, ordered by id.
pub(super) fn all(store: &Store) -> Result<Vec<FoundImage>, ImageServiceError> {
    let mut by_id: BTreeMap<String, FoundImage> = BTreeMap::new();
    for record in store.list_records()? {
        by_id
            .entry(record.config.to_string())
            .or_insert_with(|| FoundImage { id: record.config.clone(), records: Vec::new() })
            .records
            .push(record);
    }
    Ok(by_id.into_values().collect())
}

fn group(records: &[ImageRecord], id: Digest) -> FoundImage {
    let records = records.iter().filter(|r| r.config == id).cloned().collect();
    FoundImage { id, records }
}

fn is_full_hex(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The image id `spec` names as an id: a config digest, a manifest digest, or a hex prefix
/// of exactly one config digest.
fn match_id(records: &[ImageRecord], spec: &str) -> Option<Digest> {
    if let Ok(digest) = spec.parse::<Digest>() {
        return records
            .iter()
            .find(|r| r.config == digest)
            .or_else(|| records.iter().find(|r| r.manifest == digest))
            .map(|r| r.config.clone());
    }
    let hex_only = !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex_only {
        return None;
    }
    let ids: BTreeSet<&Digest> = records.iter().map(|r| &r.config).filter(|c| c.hex().starts_with(spec)).collect();
    match ids.len() {
        1 => ids.into_iter().next().cloned(),
        _ => None,
    }
}

fn same_repository(record: &ImageRecord, reference: &Reference) -> bool {
    Reference::parse(&record.name).is_ok_and(|r| r.name() == reference.name())
}

/// The CRI view of an image: names, size, the user its config runs as.
pub(super) fn describe(store: &Store, image: &FoundImage) -> Result<Image, ImageServiceError> {
    let mut repo_tags = BTreeSet::new();
    let mut repo_digests = BTreeSet::new();
    for record in &image.records {
        match Reference::parse(&record.name) {
            Ok(r) => {
                if let Some(tag) = r.tag() {
                    repo_tags.insert(format!("{}:{tag}", r.name()));
                }
                repo_digests.insert(format!("{}@{}", r.name(), record.manifest));
            }
            // Records are written from parsed references; an odd one is shown as it is.
            Err(_) => {
                repo_tags.insert(record.name.clone());
            }
        }
    }
    let config = read_config(store, image)?;
    let (uid, username) = user_of(&config);
    Ok(Image {
        id: image.id.to_string(),
        repo_tags: repo_tags.into_iter().collect(),
        repo_digests: repo_digests.into_iter().collect(),
        size: size(store, image),
        uid: uid.map(|value| Int64Value { value }),
        username,
        spec: Some(ImageSpec { image: image.id.to_string(), ..Default::default() }),
        pinned: false,
    })
}

/// The verbose `info` of `ImageStatus`: the image config as the image declares it, and the
/// store's records of the image.
pub(super) fn verbose_info(store: &Store, image: &FoundImage) -> Result<String, ImageServiceError> {
    let config = read_config(store, image)?;
    Ok(json!({ "id": image.id, "records": image.records, "imageSpec": config }).to_string())
}

fn read_config(store: &Store, image: &FoundImage) -> Result<serde_json::Value, ImageServiceError> {
    let bytes = store.read_blob(&image.id)?;
    serde_json::from_slice(&bytes).map_err(|source| ImageServiceError::Config { id: image.id.clone(), source })
}

/// `config.User`: a numeric user (before any `:group`) is the uid, anything else a name.
fn user_of(config: &serde_json::Value) -> (Option<i64>, String) {
    let user = config.pointer("/config/User").and_then(|u| u.as_str()).unwrap_or("");
    let user = user.split(':').next().unwrap_or("");
    match user {
        "" => (None, String::new()),
        u => match u.parse::<i64>() {
            Ok(uid) => (Some(uid), String::new()),
            Err(_) => (None, u.to_string()),
        },
    }
}

/// The bytes of the image's blobs (manifests, config, compressed layers), each counted once.
fn size(store: &Store, image: &FoundImage) -> u64 {
    let mut blobs: HashSet<&Digest> = HashSet::new();
    for r in &image.records {
        blobs.insert(&r.manifest);
        blobs.insert(&r.config);
        blobs.extend(&r.layers);
    }
    blobs.into_iter().filter_map(|d| std::fs::metadata(store.blob_path(d)).ok()).map(|m| m.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(records: &[(&str, &[u8], &[u8])]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (name, manifest, config) in records {
            let manifest = store.ingest_bytes(manifest).unwrap();
            let config = store.ingest_bytes(config).unwrap();
            store.put_record(&ImageRecord { name: name.to_string(), manifest, config, layers: vec![] }).unwrap();
        }
        (dir, store)
    }

    const CONFIG_A: &[u8] = br#"{"config":{"User":"1000:1000"}}"#;
    const CONFIG_B: &[u8] = br#"{"config":{"User":"nobody"}}"#;

    #[test]
    fn finds_by_id_prefix_manifest_and_reference() {
        let (_dir, store) = store_with(&[
            ("docker.io/library/busybox:latest", b"m1", CONFIG_A),
            ("docker.io/library/busybox:1.36", b"m1", CONFIG_A),
            ("localhost:5000/app:v1", b"m2", CONFIG_B),
        ]);
        let a = Digest::of(CONFIG_A);
        let m1 = Digest::of(b"m1");
        let id_of = |spec: &str| find(&store, spec).unwrap().map(|f| f.id);
        assert_eq!(id_of(&a.to_string()), Some(a.clone()));
        assert_eq!(id_of(a.hex()), Some(a.clone()));
        assert_eq!(id_of(&a.hex()[..12]), Some(a.clone()));
        assert_eq!(id_of(&m1.to_string()), Some(a.clone()));
        assert_eq!(id_of("busybox"), Some(a.clone()));
        assert_eq!(id_of(&format!("busybox@{m1}")), Some(a.clone()));
        assert_eq!(id_of("localhost:5000/app:v1"), Some(Digest::of(CONFIG_B)));
        assert_eq!(id_of("busybox:1.37"), None);
        assert_eq!(id_of(Digest::of(b"nothing").hex()), None);
        assert_eq!(find(&store, "busybox").unwrap().unwrap().records.len(), 2);
        let err = find(&store, "Not/Valid").unwrap_err();
        assert!(err.to_string().contains("Not/Valid"), "{err}");
    }

    #[test]
    fn describes_names_size_and_user() {
        let (_dir, store) = store_with(&[
            ("docker.io/library/busybox:latest", b"m1", CONFIG_A),
            (&format!("docker.io/library/busybox@{}", Digest::of(b"m1")), b"m1", CONFIG_A),
            ("localhost:5000/app:v1", b"m2", CONFIG_B),
        ]);
        let images = all(&store).unwrap();
        assert_eq!(images.len(), 2);
        let busybox = images.iter().find(|i| i.id == Digest::of(CONFIG_A)).unwrap();
        let image = describe(&store, busybox).unwrap();
        assert_eq!(image.repo_tags, vec!["docker.io/library/busybox:latest".to_string()]);
        assert_eq!(image.repo_digests, vec![format!("docker.io/library/busybox@{}", Digest::of(b"m1"))]);
        assert_eq!(image.size, (2 + CONFIG_A.len()) as u64);
        assert_eq!(image.uid, Some(Int64Value { value: 1000 }));
        assert_eq!(image.username, "");
        let app = images.iter().find(|i| i.id == Digest::of(CONFIG_B)).unwrap();
        let image = describe(&store, app).unwrap();
        assert_eq!((image.uid, image.username.as_str()), (None, "nobody"));
        let info: serde_json::Value = serde_json::from_str(&verbose_info(&store, app).unwrap()).unwrap();
        assert_eq!(info["imageSpec"]["config"]["User"], "nobody");
    }
}
