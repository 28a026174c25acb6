//! A container rootfs as an overlay of an imported image's snapshots plus its own upper dir.
//! Root only (overlayfs mounts, whiteout devices): scripts/test runs it as root.

use std::fs;

use images::import::import;
use images::registry::Platform;
use images::rootfs::{mount_rootfs, unmount_rootfs, Rootfs};
use images::store::Store;
use test_support::test_images::test_image;

/// Unmounts even when an assertion fails.
struct Mounted(Rootfs);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount_rootfs(&self.0);
    }
}

#[test]
#[ignore = "needs root"]
fn a_rootfs_shows_the_merged_image_and_writes_go_to_its_own_upper_dir() {
    test_support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let platform = Platform::new("linux", "amd64", None);
    let record = import(&store, &test_image("layered"), &platform, Some("krs/layered:1")).unwrap().remove(0);
    let m = Mounted(mount_rootfs(&store, &record, &dir.path().join("c1")).unwrap());
    let root = &m.0.target;

    assert!(root.join("bin/busybox").is_file(), "the bottom layer shows");
    assert!(!root.join("data/gone.txt").exists(), "a whiteout hides a lower file");
    assert!(!root.join("data/gonedir").exists(), "a whiteout hides a lower directory");
    let mut opaque: Vec<_> = fs::read_dir(root.join("data/opaque")).unwrap().map(|e| e.unwrap().file_name()).collect();
    opaque.sort();
    assert_eq!(opaque, ["new.txt"], "an opaque directory hides what lower layers had in it");

    fs::write(root.join("data/written.txt"), "container\n").unwrap();
    fs::remove_file(root.join("data/keep.txt")).unwrap();
    assert_eq!(fs::read_to_string(dir.path().join("c1/upper/data/written.txt")).unwrap(), "container\n");
    // The shared snapshots are untouched: another container still sees keep.txt.
    let m2 = Mounted(mount_rootfs(&store, &record, &dir.path().join("c2")).unwrap());
    assert!(m2.0.target.join("data/keep.txt").is_file());
    assert!(!m2.0.target.join("data/written.txt").exists());
}

#[test]
fn a_layer_missing_from_the_store_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let platform = Platform::new("linux", "amd64", None);
    let record = import(&store, &test_image("busybox"), &platform, Some("krs/busybox:1")).unwrap().remove(0);
    fs::remove_dir_all(store.snapshots_dir()).unwrap();
    let err = mount_rootfs(&store, &record, &dir.path().join("c1")).unwrap_err().to_string();
    assert!(err.contains(&format!("layer {} is not unpacked", record.layers[0])), "{err}");
}
