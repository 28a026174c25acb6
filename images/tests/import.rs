//! Import of OCI layouts (dirs and tars) and `docker save` tars into the store, using the
//! layouts of scripts/build-test-images.sh and archives built here, including a corrupt
//! blob and a hostile tar.

use std::fs;
use std::path::{Path, PathBuf};

use images::digest::Digest;
use images::import::{ImportError, import};
use images::registry::Platform;
use images::store::Store;
use test_support::test_images::{layout_digest, test_image};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn amd64() -> Platform {
    Platform::new("linux", "amd64", None)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn tar_of_dir(dir: &Path, out: &Path) -> PathBuf {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
    out.to_path_buf()
}

fn tar_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

fn check_busybox(s: &Store, layout: &Path, records: &[images::store::ImageRecord], name: &str) {
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.name, name);
    assert_eq!(r.manifest.to_string(), layout_digest(layout));
    assert_eq!(s.get_record(name).unwrap(), *r);
    assert!(s.has_blob(&r.config));
    let snap = s.snapshot(&r.layers[0]).unwrap().expect("layer unpacked");
    assert!(snap.fs.join("bin/busybox").is_file());
}

#[test]
fn a_layout_dir_is_imported_under_the_given_name() {
    let (_d, s) = store();
    let layout = test_image("busybox");
    let records = import(&s, &layout, &amd64(), Some("busybox")).unwrap();
    check_busybox(&s, &layout, &records, "docker.io/library/busybox:latest");
    // Again: everything is already there, and the record is the same.
    assert_eq!(import(&s, &layout, &amd64(), Some("busybox")).unwrap(), records);
}

#[test]
fn a_bare_tag_without_a_name_is_a_clear_error() {
    let (_d, s) = store();
    let err = import(&s, &test_image("busybox"), &amd64(), None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImportError::NeedsName { ref tag, .. } if tag == "latest"), "{msg}");
    assert!(msg.contains("index.json") && msg.contains("give a name"), "{msg}");
    assert!(s.list_records().unwrap().is_empty());
}

#[test]
fn a_full_ref_name_annotation_is_normalised() {
    let (d, s) = store();
    let layout = d.path().join("layout");
    copy_dir(&test_image("busybox"), &layout);
    let index = fs::read_to_string(layout.join("index.json")).unwrap();
    fs::write(layout.join("index.json"), index.replace("\"latest\"", "\"busybox:1.36\"")).unwrap();
    let records = import(&s, &layout, &amd64(), None).unwrap();
    assert_eq!(records[0].name, "docker.io/library/busybox:1.36");
}

#[test]
fn a_layout_tar_is_imported_and_its_temp_dir_removed() {
    let (d, s) = store();
    let layout = test_image("busybox-zstd");
    let tar = tar_of_dir(&layout, &d.path().join("busybox.tar"));
    let records = import(&s, &tar, &amd64(), Some("registry.local/bb:zstd")).unwrap();
    assert_eq!(records[0].name, "registry.local/bb:zstd");
    assert_eq!(records[0].manifest.to_string(), layout_digest(&layout));
    assert!(s.snapshot(&records[0].layers[0]).unwrap().unwrap().fs.join("bin/busybox").is_file());
    assert_eq!(fs::read_dir(s.root().join("tmp")).unwrap().count(), 0, "temp files left behind");
}

#[test]
#[ignore = "needs root"]
fn the_layered_image_is_imported_from_a_dir_and_a_tar() {
    let (d, s) = store();
    let layout = test_image("layered");
    let records = import(&s, &layout, &amd64(), Some("layered")).unwrap();
    assert_eq!(records[0].layers.len(), 4);
    let top = s.snapshot(&records[0].layers[3]).unwrap().unwrap();
    assert!(top.fs.join("data/opaque/new.txt").is_file());

    let (_d2, s2) = store();
    let tar = tar_of_dir(&layout, &d.path().join("layered.tar"));
    let again = import(&s2, &tar, &amd64(), Some("layered")).unwrap();
    assert_eq!(again, records);
}

#[test]
fn a_multiarch_index_is_resolved_by_platform() {
    let (d, s) = store();
    let layout = test_image("multiarch");
    let arm = import(&s, &layout, &Platform::new("linux", "arm64", None), Some("multi:arm")).unwrap();
    assert_eq!(arm[0].layers.len(), 1);
    let snap = s.snapshot(&arm[0].layers[0]).unwrap().unwrap();
    assert_eq!(fs::read_to_string(snap.fs.join("ARCH")).unwrap(), "arm64\n");
    assert_ne!(arm[0].manifest.to_string(), layout_digest(&layout), "the platform manifest, not the index");

    let tar = tar_of_dir(&layout, &d.path().join("multi.tar"));
    let amd = import(&s, &tar, &amd64(), Some("multi:amd")).unwrap();
    assert!(s.snapshot(&amd[0].layers[0]).unwrap().unwrap().fs.join("bin/busybox").is_file());

    let err = import(&s, &layout, &Platform::new("linux", "s390x", None), Some("multi:s390x")).unwrap_err();
    assert!(err.to_string().contains("linux/s390x"), "{err}");
    assert!(s.get_record("docker.io/library/multi:s390x").is_err());
}

/// A `docker save` archive: manifest.json, a config json and an uncompressed layer.tar.
fn docker_save(diff_id_override: Option<&Digest>) -> (Vec<u8>, Digest) {
    let mut layer = tar::Builder::new(Vec::new());
    tar_file(&mut layer, "etc/hello", b"hello from docker save\n");
    let layer = layer.into_inner().unwrap();
    let diff_id = Digest::of(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["cat", "/etc/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id_override.unwrap_or(&diff_id).to_string()]},
    })
    .to_string();
    let config_name = format!("{}.json", Digest::of(config.as_bytes()).hex());
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["example.com/app:v1", "app:latest"],
        "Layers": ["0123abcd/layer.tar"],
    }])
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    tar_file(&mut b, "manifest.json", manifest.as_bytes());
    tar_file(&mut b, &config_name, config.as_bytes());
    tar_file(&mut b, "0123abcd/layer.tar", &layer);
    (b.into_inner().unwrap(), diff_id)
}

#[test]
fn a_docker_save_tar_is_imported_with_an_oci_manifest() {
    let (d, s) = store();
    let (archive, diff_id) = docker_save(None);
    let path = d.path().join("save.tar");
    fs::write(&path, archive).unwrap();
    let records = import(&s, &path, &amd64(), None).unwrap();
    let names: Vec<_> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["example.com/app:v1", "docker.io/library/app:latest"]);
    let r = &records[0];
    assert_eq!(r.layers, vec![diff_id.clone()], "an uncompressed layer's digest is its diff id");
    let manifest: serde_json::Value = serde_json::from_slice(&s.read_blob(&r.manifest).unwrap()).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["config"]["digest"], r.config.to_string());
    assert_eq!(manifest["layers"][0]["digest"], diff_id.to_string());
    assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    let snap = s.snapshot(&r.layers[0]).unwrap().unwrap();
    assert_eq!(fs::read_to_string(snap.fs.join("etc/hello")).unwrap(), "hello from docker save\n");
    assert_eq!(s.get_record("example.com/app:v1").unwrap(), *r);
}

#[test]
fn a_docker_save_layer_not_matching_its_diff_id_is_refused() {
    let (d, s) = store();
    let wrong = Digest::of(b"something else");
    let (archive, _) = docker_save(Some(&wrong));
    let path = d.path().join("save.tar");
    fs::write(&path, archive).unwrap();
    let err = import(&s, &path, &amd64(), None).unwrap_err();
    assert!(matches!(err, ImportError::DiffId { .. }), "{err}");
    assert!(err.to_string().contains(&wrong.to_string()), "{err}");
    assert!(s.list_records().unwrap().is_empty());
}

#[test]
fn a_corrupt_blob_in_a_layout_is_refused_and_named() {
    let (d, s) = store();
    let layout = d.path().join("layout");
    copy_dir(&test_image("busybox"), &layout);
    let manifest_digest = layout_digest(&layout);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&manifest_digest[7..])).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let blob = layout.join("blobs/sha256").join(&layer[7..]);
    let mut data = fs::read(&blob).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&blob, data).unwrap();

    let err = import(&s, &layout, &amd64(), Some("busybox")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImportError::Mismatch { .. }), "{msg}");
    assert!(msg.contains(&layer), "the message names the digest: {msg}");
    assert!(s.list_records().unwrap().is_empty(), "no record after a failed import");
    assert!(!s.has_blob(&layer.parse().unwrap()));
}

/// A tar header whose name is written raw, as the tar crate refuses to build `..` itself.
fn raw_entry(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn a_hostile_tar_is_refused_and_writes_nothing_outside() {
    for evil in ["../evil.txt", "../../evil.txt", "a/../../../evil.txt", "/tmp/krs-import-evil.txt"] {
        let (d, s) = store();
        let mut archive = Vec::new();
        raw_entry(&mut archive, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        raw_entry(&mut archive, evil, b"pwned");
        archive.extend_from_slice(&[0u8; 1024]);
        let path = d.path().join("hostile.tar");
        fs::write(&path, archive).unwrap();

        let err = import(&s, &path, &amd64(), Some("x")).unwrap_err();
        assert!(matches!(err, ImportError::UnsafeEntry { .. }), "{evil}: {err}");
        assert!(err.to_string().contains("evil.txt"), "{err}");
        for p in [s.root().join("tmp/evil.txt"), s.root().join("evil.txt"), d.path().join("evil.txt")] {
            assert!(!p.exists(), "{evil}: {} was written", p.display());
        }
        assert!(!Path::new("/tmp/krs-import-evil.txt").exists());
        assert_eq!(fs::read_dir(s.root().join("tmp")).unwrap().count(), 0, "temp dir left behind");
    }
}

#[test]
fn a_directory_that_is_no_image_is_refused() {
    let (d, s) = store();
    let err = import(&s, d.path(), &amd64(), None).unwrap_err();
    assert!(matches!(err, ImportError::Unrecognised(_)), "{err}");
}

#[test]
fn links_in_an_import_tar_are_never_followed() {
    let (d, s) = store();
    let outside = d.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "escape", &outside).unwrap();
    tar_file(&mut b, "escape/pwned.txt", b"pwned");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_mode(0o644);
    h.set_size(0);
    b.append_link(&mut h, "manifest.json", "escape/pwned.txt").unwrap();
    let path = d.path().join("links.tar");
    fs::write(&path, b.into_inner().unwrap()).unwrap();

    let err = import(&s, &path, &amd64(), Some("x")).unwrap_err();
    assert!(matches!(err, ImportError::Unrecognised(_)), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "a file was written through a symlink");
}

#[test]
fn a_docker_25_save_with_blobs_is_imported_by_its_manifest_json() {
    let (d, s) = store();
    let mut layer = tar::Builder::new(Vec::new());
    tar_file(&mut layer, "hello", b"hi\n");
    let layer = layer.into_inner().unwrap();
    let diff_id = Digest::of(&layer);
    let config = serde_json::json!({"os": "linux", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}})
    .to_string();
    let config_digest = Digest::of(config.as_bytes());
    let manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", config_digest.hex()),
        "RepoTags": null,
        "Layers": [format!("blobs/sha256/{}", diff_id.hex())],
    }])
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    tar_file(&mut b, "manifest.json", manifest.as_bytes());
    tar_file(&mut b, &format!("blobs/sha256/{}", config_digest.hex()), config.as_bytes());
    tar_file(&mut b, &format!("blobs/sha256/{}", diff_id.hex()), &layer);
    let path = d.path().join("save25.tar");
    fs::write(&path, b.into_inner().unwrap()).unwrap();

    // No RepoTags (saved by id): a name is needed.
    let err = import(&s, &path, &amd64(), None).unwrap_err();
    assert!(matches!(err, ImportError::Unnamed { .. }), "{err}");
    assert!(err.to_string().contains("give a name"), "{err}");
    let records = import(&s, &path, &amd64(), Some("localhost:5000/hello:1")).unwrap();
    assert_eq!(records[0].name, "localhost:5000/hello:1");
    assert_eq!((records[0].config.clone(), records[0].layers.clone()), (config_digest, vec![diff_id]));
}
