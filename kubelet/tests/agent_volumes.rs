//! Volumes on real tmpfs mounts, as root: a secret volume and a memory-backed emptyDir with
//! a sizeLimit are mounted by `HostMounter` under a temporary kubelet root, hold their
//! files, and are unmounted and removed by teardown.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kubelet_rs::agent::volumes::VolumeManager;
use kubelet_rs::agent::volumes::mounter::{HostMounter, Mounter};
use kubelet_rs::agent::volumes::objects::FakeObjects;
use serde_json::json;

/// The options of the tmpfs mounted at `path`, from /proc/self/mountinfo.
fn tmpfs_options(path: &std::path::Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        (fields[4] == path.to_str()? && fields[sep + 1] == "tmpfs")
            .then(|| fields[sep + 3].to_string())
    })
}

#[tokio::test]
async fn secret_and_memory_empty_dir_are_tmpfs_until_teardown() {
    test_support::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let objects = Arc::new(FakeObjects::default());
    objects.add_secret("ns", "creds", &[("password", b"s3cret")]);
    let manager = VolumeManager::new(&root, objects, Arc::new(HostMounter));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-root-test"},
        "spec": {"containers": [{"name": "c"}], "volumes": [
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        ]},
    }))
    .unwrap();

    let result = manager.setup(&pod).await;
    let secret = manager.volume_dir("uid-root-test", "secret", "creds");
    let fast = manager.volume_dir("uid-root-test", "empty-dir", "fast");
    let mounted_secret = tmpfs_options(&secret);
    let mounted_fast = tmpfs_options(&fast);
    let content = std::fs::read_to_string(secret.join("password"));
    // Set up twice: nothing is mounted again.
    let again = manager.setup(&pod).await;
    let count = HostMounter.mounts_under(&root).unwrap().len();
    manager.teardown("uid-root-test").expect("teardown");

    result.expect("setup");
    again.expect("second setup");
    assert!(mounted_secret.is_some(), "the secret volume is a tmpfs");
    assert!(
        mounted_fast.unwrap().contains("size=8192k"),
        "the emptyDir tmpfs has the sizeLimit"
    );
    assert_eq!(content.unwrap(), "s3cret");
    assert_eq!(count, 2, "each tmpfs is mounted once");
    assert!(
        tmpfs_options(&secret).is_none() && tmpfs_options(&fast).is_none(),
        "teardown unmounts"
    );
    assert!(
        !root.join("pods/uid-root-test").exists(),
        "teardown removes the pod directory"
    );
}
