use super::mounter::RecordingMounter;
use super::objects::FakeObjects;
use super::*;
use serde_json::json;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    objects: Arc<FakeObjects>,
    mounter: Arc<RecordingMounter>,
    manager: VolumeManager,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let objects = Arc::new(FakeObjects::default());
    let mounter = Arc::new(RecordingMounter::default());
    let manager = VolumeManager::new(&root, objects.clone(), mounter.clone());
    Fixture {
        _tmp: tmp,
        root,
        objects,
        mounter,
        manager,
    }
}

fn pod(volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "labels": {"app": "web", "tier": "a\"b"}},
        "spec": {"serviceAccountName": "builder", "volumes": volumes, "containers": [{"name": "c", "resources": {"limits": {"memory": "32Mi"}}, "volumeMounts": mounts}]},
    }))
    .unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn empty_dirs_on_disk_and_in_memory() {
    let f = fixture();
    let p = pod(
        json!([{"name": "scratch", "emptyDir": {}}, {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]),
        json!([]),
    );
    f.manager.setup(&p).await.unwrap();
    f.manager.setup(&p).await.unwrap();
    let scratch = f
        .root
        .join("pods/uid-1/volumes/kubernetes.io~empty-dir/scratch");
    let fast = f
        .root
        .join("pods/uid-1/volumes/kubernetes.io~empty-dir/fast");
    assert!(scratch.is_dir());
    assert_eq!(mode(&scratch), 0o777);
    assert_eq!(
        *f.mounter.calls.lock().unwrap(),
        [format!("mount {} size={}", fast.display(), 64 << 20)]
    );
}

#[tokio::test]
async fn config_maps_and_secrets_follow_their_objects() {
    let f = fixture();
    f.objects
        .add_config_map("ns", "cfg", &[("a.conf", "one"), ("b.conf", "two")]);
    f.objects
        .add_secret("ns", "creds", &[("user", b"admin"), ("pass", b"pw")]);
    let p = pod(
        json!([
            {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "conf/a", "mode": 0o600}]}},
            {"name": "all", "configMap": {"name": "cfg", "defaultMode": 0o640}},
            {"name": "creds", "secret": {"secretName": "creds"}},
        ]),
        json!([]),
    );
    f.manager.setup(&p).await.unwrap();
    let cfg = f.manager.volume_dir("uid-1", "configmap", "cfg");
    let all = f.manager.volume_dir("uid-1", "configmap", "all");
    let creds = f.manager.volume_dir("uid-1", "secret", "creds");
    assert_eq!(fs::read_to_string(cfg.join("conf/a")).unwrap(), "one");
    assert_eq!(mode(&cfg.join("conf/a")), 0o600);
    assert!(!cfg.join("b.conf").exists());
    assert_eq!(mode(&all.join("b.conf")), 0o640);
    assert_eq!(fs::read_to_string(creds.join("user")).unwrap(), "admin");
    assert_eq!(mode(&creds.join("pass")), 0o644);
    // Secrets are on tmpfs; configMaps are not.
    assert_eq!(
        *f.mounter.calls.lock().unwrap(),
        [format!("mount {}", creds.display())]
    );

    let before = fs::read_link(all.join("..data")).unwrap();
    f.objects
        .add_config_map("ns", "cfg", &[("a.conf", "uno"), ("b.conf", "two")]);
    f.manager.setup(&p).await.unwrap();
    assert_eq!(fs::read_to_string(cfg.join("conf/a")).unwrap(), "uno");
    assert_ne!(fs::read_link(all.join("..data")).unwrap(), before);
    assert_eq!(
        f.mounter.calls.lock().unwrap().len(),
        1,
        "the tmpfs is mounted once"
    );
}

#[tokio::test]
async fn missing_objects_fail_unless_optional() {
    let f = fixture();
    f.objects.add_config_map("ns", "cfg", &[("a", "1")]);
    let manager = &f.manager;
    let err = |volumes| {
        let p = pod(volumes, json!([]));
        async move { manager.setup(&p).await.unwrap_err().to_string() }
    };
    assert_eq!(
        err(json!([{"name": "v", "configMap": {"name": "x"}}])).await,
        "MountVolume.SetUp failed for volume \"v\" : configmap \"x\" not found"
    );
    assert_eq!(
        err(json!([{"name": "v", "secret": {"secretName": "x"}}])).await,
        "MountVolume.SetUp failed for volume \"v\" : secret \"x\" not found"
    );
    assert_eq!(
        err(json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}])).await,
        "MountVolume.SetUp failed for volume \"v\" : configmap references non-existent config key: zz"
    );
    assert_eq!(
        err(json!([{"name": "v", "iscsi": {"targetPortal": "x", "iqn": "y", "lun": 0}}])).await,
        "MountVolume.SetUp failed for volume \"v\" : volume type iscsi is not supported by this kubelet"
    );
    let p = pod(
        json!([{"name": "v", "configMap": {"name": "x", "optional": true}}, {"name": "w", "secret": {"secretName": "x", "optional": true}}]),
        json!([]),
    );
    f.manager.setup(&p).await.unwrap();
    assert!(
        f.manager
            .volume_dir("uid-1", "configmap", "v")
            .join("..data")
            .is_dir()
    );
}

#[tokio::test]
async fn downward_api_and_kube_api_access() {
    let f = fixture();
    f.manager
        .set_node_allocatable([("cpu".to_string(), Quantity("2".into()))].into());
    f.objects
        .add_config_map("ns", "kube-root-ca.crt", &[("ca.crt", "CERT")]);
    let p = pod(
        json!([
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
                {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
            ]}},
            {"name": "kube-api-access-abcde", "projected": {"defaultMode": 0o644, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}},
        ]),
        json!([]),
    );
    f.manager.setup(&p).await.unwrap();
    let info = f.manager.volume_dir("uid-1", "downward-api", "info");
    assert_eq!(
        fs::read_to_string(info.join("labels")).unwrap(),
        "app=\"web\"\ntier=\"a\\\"b\""
    );
    assert_eq!(fs::read_to_string(info.join("name")).unwrap(), "p");
    assert_eq!(fs::read_to_string(info.join("mem")).unwrap(), "32");
    assert_eq!(fs::read_to_string(info.join("cpu")).unwrap(), "2000");
    let access = f
        .manager
        .volume_dir("uid-1", "projected", "kube-api-access-abcde");
    assert_eq!(fs::read_to_string(access.join("token")).unwrap(), "token-1");
    assert_eq!(fs::read_to_string(access.join("ca.crt")).unwrap(), "CERT");
    assert_eq!(fs::read_to_string(access.join("namespace")).unwrap(), "ns");
    let requests = f.objects.token_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (
            requests[0].service_account.as_str(),
            requests[0].expiration_seconds,
            requests[0].pod_uid.as_str()
        ),
        ("builder", 3607, "uid-1")
    );
    // A second sync reuses the cached token.
    f.manager.setup(&p).await.unwrap();
    assert_eq!(f.objects.token_requests.lock().unwrap().len(), 1);
}

fn claim(
    name: &str,
    phase: &str,
    volume: Option<&str>,
) -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"volumeName": volume}, "status": {"phase": phase}})).unwrap()
}

#[tokio::test]
async fn claims_resolve_to_their_volume_path() {
    let f = fixture();
    let data = f.root.join("pv-data");
    f.objects.add_claim(claim("bound", "Bound", Some("pv-1")));
    f.objects.add_claim(claim("waiting", "Pending", None));
    f.objects.add_volume(serde_json::from_value(json!({"metadata": {"name": "pv-1"}, "spec": {"hostPath": {"path": data, "type": "DirectoryOrCreate"}}})).unwrap());
    let p = pod(
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "bound", "readOnly": true}}]),
        json!([{"name": "data", "mountPath": "/data"}]),
    );
    f.manager.setup(&p).await.unwrap();
    let mounts = f
        .manager
        .mounts(&p, &p.spec.as_ref().unwrap().containers[0], &[])
        .unwrap();
    assert_eq!(mounts[0].host_path, data.to_string_lossy());
    assert!(mounts[0].readonly);
    assert!(data.is_dir());
    let p = pod(
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "waiting"}}]),
        json!([]),
    );
    assert_eq!(
        f.manager.setup(&p).await.unwrap_err().to_string(),
        "MountVolume.SetUp failed for volume \"data\" : PVC ns/waiting has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")"
    );
}

#[tokio::test]
async fn mounts_with_sub_paths_read_only_and_propagation() {
    let f = fixture();
    f.objects.add_config_map("ns", "cfg", &[("app.conf", "x")]);
    let host = f.root.join("host");
    let p = pod(
        json!([{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "host", "hostPath": {"path": host, "type": "DirectoryOrCreate"}}]),
        json!([
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "scratch", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"},
            {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
            {"name": "host", "mountPath": "/host", "readOnly": true, "mountPropagation": "HostToContainer"},
            {"name": "host", "mountPath": "/host-rro", "readOnly": true, "recursiveReadOnly": "Enabled"},
            {"name": "scratch", "mountPath": "/bad", "subPath": "../../etc"},
        ]),
    );
    let container = p.spec.as_ref().unwrap().containers[0].clone();
    assert!(matches!(
        f.manager.mounts(&p, &container, &[]),
        Err(VolumeError::NotSetUp { .. })
    ));
    f.manager.setup(&p).await.unwrap();
    let err = f
        .manager
        .mounts(&p, &container, &[("POD".into(), "p".into())])
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to prepare subPath for volumeMount \"/bad\" of container \"c\""),
        "{err}"
    );
    let mut container = container;
    container.volume_mounts.as_mut().unwrap().pop();
    let mounts = f
        .manager
        .mounts(&p, &container, &[("POD".into(), "p".into())])
        .unwrap();
    let scratch = fs::canonicalize(f.manager.volume_dir("uid-1", "empty-dir", "scratch")).unwrap();
    assert_eq!(
        mounts[0].host_path,
        f.manager
            .volume_dir("uid-1", "empty-dir", "scratch")
            .to_string_lossy()
    );
    assert!(!mounts[0].readonly);
    assert_eq!(
        mounts[1].host_path,
        scratch.join("logs/p").to_string_lossy()
    );
    assert!(scratch.join("logs/p").is_dir());
    assert!(
        mounts[2].host_path.ends_with("/app.conf") && mounts[2].host_path.contains("/..20"),
        "{}",
        mounts[2].host_path
    );
    assert!(mounts[2].readonly, "configMap volumes are read-only");
    assert!(mounts[3].readonly);
    assert_eq!(
        mounts[3].propagation,
        cri::MountPropagation::PropagationHostToContainer as i32
    );

    let mut stray = container.clone();
    stray.volume_mounts = Some(vec![
        serde_json::from_value(json!({"name": "nope", "mountPath": "/x"})).unwrap(),
    ]);
    assert!(matches!(
        f.manager.mounts(&p, &stray, &[]),
        Err(VolumeError::NoVolume { .. })
    ));
}

#[tokio::test]
async fn teardown_unmounts_then_removes_and_orphans_go() {
    let f = fixture();
    f.objects.add_secret("ns", "s", &[("k", b"v")]);
    let p = pod(
        json!([{"name": "s", "secret": {"secretName": "s"}}, {"name": "e", "emptyDir": {}}]),
        json!([]),
    );
    f.manager.setup(&p).await.unwrap();
    let mut other = p.clone();
    other.metadata.uid = Some("uid-2".into());
    f.manager.setup(&other).await.unwrap();
    f.manager.teardown("uid-1").unwrap();
    assert!(!f.root.join("pods/uid-1").exists());
    let secret_dir = f.manager.volume_dir("uid-1", "secret", "s");
    assert!(
        f.mounter
            .calls
            .lock()
            .unwrap()
            .contains(&format!("unmount {}", secret_dir.display()))
    );
    f.manager.teardown("uid-1").unwrap();

    fs::create_dir_all(f.root.join("pods/uid-3")).unwrap();
    let known: HashSet<String> = ["uid-3".to_string()].into();
    assert_eq!(f.manager.cleanup_orphans(&known), ["uid-2"]);
    assert!(f.root.join("pods/uid-3").exists());
    assert!(f.mounter.mounted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn fs_group_owns_volume_files_without_rewrites() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture();
    // Our own group: no privilege needed to give files to it.
    let gid = nix::unistd::getegid().as_raw();
    f.objects.add_secret("ns", "s", &[("k", b"v")]);
    let mut p = pod(
        json!([{"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}}, {"name": "e", "emptyDir": {}}]),
        json!([]),
    );
    p.spec.as_mut().unwrap().security_context =
        Some(serde_json::from_value(json!({"fsGroup": gid})).unwrap());
    f.manager.setup(&p).await.unwrap();
    let secret = f.manager.volume_dir("uid-1", "secret", "s");
    let data = fs::read_link(secret.join("..data")).unwrap();
    assert_eq!(mode(&secret.join("k")), 0o440);
    assert_eq!(fs::metadata(secret.join("k")).unwrap().gid(), gid);
    assert_eq!(
        mode(&f.manager.volume_dir("uid-1", "empty-dir", "e")),
        0o2777
    );
    f.manager.setup(&p).await.unwrap();
    assert_eq!(
        fs::read_link(secret.join("..data")).unwrap(),
        data,
        "unchanged contents are not rewritten"
    );
}
