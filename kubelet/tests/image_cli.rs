//! `kubelet-rs image ...` against a real registry on loopback (test_support::registry).
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use serde_json::Value;
use test_support::cutting_proxy::CuttingProxy;
use test_support::registry::{Auth, Registry};
use test_support::test_images::{layout_blob, layout_digest, test_image};

fn krs(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
        .arg("image")
        .arg("--root")
        .arg(root)
        .arg("--hosts-dir")
        .arg(root.join("no-hosts"))
        .args(args)
        .env("DOCKER_CONFIG", root.join("no-docker-config"))
        .output()
        .expect("run kubelet-rs")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = krs(root, args);
    assert!(out.status.success(), "kubelet-rs image {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(root: &Path, args: &[&str]) -> String {
    let out = krs(root, args);
    assert_eq!(out.status.code(), Some(1), "kubelet-rs image {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

fn inspect(root: &Path, image: &str) -> Value {
    serde_json::from_str(&ok(root, &["inspect", image])).unwrap()
}

fn snapshot(root: &Path, layer: &Value) -> PathBuf {
    let hex = layer.as_str().unwrap().strip_prefix("sha256:").unwrap();
    root.join("images/snapshots").join(hex).join("fs")
}

/// Every blob in the store with its modification time.
fn blob_times(root: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut v: Vec<_> = fs::read_dir(root.join("images/blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().unwrap().modified().unwrap())
        })
        .collect();
    v.sort();
    v
}

/// The first layer digest of a single-platform test image.
fn first_layer(image: &str) -> String {
    let layout = test_image(image);
    let manifest: Value = serde_json::from_slice(&layout_blob(&layout, &layout_digest(&layout))).unwrap();
    manifest["layers"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn pull_list_inspect_remove_prune() {
    let reg = Registry::start(Auth::None);
    let busybox = reg.push("busybox", "busybox:latest");
    reg.push("busybox-zstd", "busybox-zstd:latest");
    reg.push("multiarch", "multiarch:latest");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // By tag, then by digest.
    let out = ok(root, &["pull", &reg.reference("busybox:latest")]);
    assert!(out.contains(&busybox), "{out}");
    let by_digest = format!("{}/busybox@{busybox}", reg.host);
    ok(root, &["pull", &by_digest]);
    let info = inspect(root, &reg.reference("busybox:latest"));
    assert_eq!(info["record"]["manifest"], busybox.as_str());
    assert_eq!(info["config"]["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(snapshot(root, &info["record"]["layers"][0]).join("bin/busybox").is_file());
    assert_eq!(inspect(root, &busybox)["record"]["manifest"], busybox.as_str());

    // A second pull downloads nothing: every blob keeps its modification time.
    let before = blob_times(root);
    ok(root, &["pull", &reg.reference("busybox:latest")]);
    assert_eq!(blob_times(root), before);

    // zstd layers.
    ok(root, &["pull", &reg.reference("busybox-zstd:latest")]);
    let zstd = inspect(root, &reg.reference("busybox-zstd:latest"));
    assert!(snapshot(root, &zstd["record"]["layers"][0]).join("bin/busybox").is_file());

    // An index: the host's platform by default (amd64 here), arm64 when asked.
    if cfg!(target_arch = "x86_64") {
        ok(root, &["pull", &reg.reference("multiarch:latest")]);
        assert_eq!(inspect(root, &reg.reference("multiarch:latest"))["record"]["manifest"], busybox.as_str());
    }
    ok(root, &["pull", &reg.reference("multiarch:latest"), "--platform", "linux/amd64"]);
    let amd64 = inspect(root, &reg.reference("multiarch:latest"));
    assert_eq!(amd64["record"]["manifest"], busybox.as_str());
    ok(root, &["pull", &reg.reference("multiarch:latest"), "--platform", "linux/arm64"]);
    let arm64 = inspect(root, &reg.reference("multiarch:latest"));
    assert_ne!(arm64["record"]["manifest"], busybox.as_str());
    assert_eq!(fs::read_to_string(snapshot(root, &arm64["record"]["layers"][0]).join("ARCH")).unwrap(), "arm64\n");

    let names = ok(root, &["list", "-q"]);
    let mut want = vec![
        reg.reference("busybox-zstd:latest"),
        by_digest.clone(),
        reg.reference("busybox:latest"),
        reg.reference("multiarch:latest"),
    ];
    want.sort();
    assert_eq!(names.lines().collect::<Vec<_>>(), want);
    let table = ok(root, &["list"]);
    assert!(table.starts_with("REFERENCE"), "{table}");
    assert!(table.contains(&busybox["sha256:".len().."sha256:".len() + 12]), "{table}");
    let json: Value = serde_json::from_str(&ok(root, &["list", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);

    // Remove all, prune, and the store is empty.
    ok(root, &["remove", &reg.reference("busybox:latest"), &by_digest]);
    ok(root, &["remove", &reg.reference("busybox-zstd:latest"), &reg.reference("multiarch:latest")]);
    assert_eq!(ok(root, &["list", "-q"]), "");
    let pruned = ok(root, &["prune"]);
    assert!(pruned.contains("freed"), "{pruned}");
    assert_eq!(fs::read_dir(root.join("images/blobs/sha256")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join("images/snapshots")).unwrap().count(), 0);
    let err = fails(root, &["inspect", &reg.reference("busybox:latest")]);
    assert!(err.contains("busybox"), "{err}");
}

#[test]
fn a_corrupt_layer_fails_naming_its_digest_and_leaves_no_record() {
    let reg = Registry::start(Auth::None);
    reg.push("busybox", "busybox:latest");
    let layer = first_layer("busybox");
    let path = reg.blob_path(&layer);
    let mut data = fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&path, &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = fails(dir.path(), &["pull", &reg.reference("busybox:latest")]);
    assert!(err.contains(&layer), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(ok(dir.path(), &["list", "-q"]), "");
    assert!(!dir.path().join("images/blobs/sha256").join(&layer["sha256:".len()..]).exists());
    assert_eq!(fs::read_dir(dir.path().join("images/tmp")).unwrap().count(), 0, "temp files left behind");
}

#[test]
fn concurrent_pulls_of_one_image_both_succeed() {
    let reg = Registry::start(Auth::None);
    reg.push("busybox", "busybox:latest");
    let dir = tempfile::tempdir().unwrap();
    let reference = reg.reference("busybox:latest");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
            .args(["image", "--root"])
            .arg(dir.path())
            .args(["pull", &reference])
            .env("DOCKER_CONFIG", dir.path().join("no-docker-config"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(ok(dir.path(), &["list", "-q"]).trim(), reference);
    assert_eq!(inspect(dir.path(), &reference)["record"]["layers"].as_array().unwrap().len(), 1);
}

#[test]
fn a_layer_whose_diff_id_differs_from_the_config_is_refused() {
    let reg = Registry::start(Auth::None);
    let src = test_image("busybox");
    let dir = tempfile::tempdir().unwrap();
    // A copy of busybox whose config lists a wrong diffID.
    let layout = dir.path().join("bad");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::copy(src.join("oci-layout"), layout.join("oci-layout")).unwrap();
    for e in fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), layout.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    let put = |data: &[u8]| {
        let d = images::digest::Digest::of(data);
        fs::write(layout.join("blobs/sha256").join(d.hex()), data).unwrap();
        (d.to_string(), data.len())
    };
    let mut manifest: Value = serde_json::from_slice(&layout_blob(&src, &layout_digest(&src))).unwrap();
    let mut config: Value =
        serde_json::from_slice(&layout_blob(&src, manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let right = config["rootfs"]["diff_ids"][0].as_str().unwrap().to_string();
    let wrong = format!("sha256:{}", "0".repeat(64));
    config["rootfs"]["diff_ids"][0] = wrong.clone().into();
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}", reg.reference("bad:latest")))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));

    let root = dir.path().join("root");
    let err = fails(&root, &["pull", &reg.reference("bad:latest")]);
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    for part in [layer, &right, &wrong] {
        assert!(err.contains(part), "{part} not in {err}");
    }
    assert_eq!(ok(&root, &["list", "-q"]), "");
}

#[test]
fn basic_and_token_auth_with_creds() {
    for auth in [Auth::basic("alice", "s3cret"), Auth::token("bob", "pa55", false)] {
        let reg = Registry::start(auth.clone());
        reg.push("busybox", "busybox:latest");
        let dir = tempfile::tempdir().unwrap();
        let (user, password) = auth.credentials().unwrap();
        let err = fails(dir.path(), &["pull", &reg.reference("busybox:latest")]);
        assert!(err.contains("busybox"), "{err}");
        let creds = format!("{user}:{password}");
        ok(dir.path(), &["pull", &reg.reference("busybox:latest"), "--creds", &creds]);
        assert_eq!(ok(dir.path(), &["list", "-q"]).trim(), reg.reference("busybox:latest"));
    }
}

#[test]
fn an_interrupted_download_resumes() {
    let reg = Registry::start(Auth::None);
    reg.push("busybox", "busybox:latest");
    let proxy = CuttingProxy::start(&reg.host, 200_000, 1);
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}/busybox:latest", proxy.host);
    ok(dir.path(), &["pull", &reference]);
    assert_eq!(proxy.cut(), 1);
    assert!(snapshot(dir.path(), &inspect(dir.path(), &reference)["record"]["layers"][0]).join("bin/busybox").is_file());
}

#[test]
#[ignore = "needs root"]
fn layered_image_unpacks_whiteouts() {
    let reg = Registry::start(Auth::None);
    reg.push("layered", "layered:latest");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(root, &["pull", &reg.reference("layered:latest")]);
    let layers = inspect(root, &reg.reference("layered:latest"))["record"]["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 4);
    let top = snapshot(root, &layers[3]);
    for whiteout in ["data/gone.txt", "data/gonedir"] {
        let m = fs::symlink_metadata(top.join(whiteout)).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0, "{whiteout} is not a 0:0 char device");
    }
    assert_eq!(xattr_opaque(&top.join("data/opaque")), Some(b"y".to_vec()));
    assert!(top.join("data/opaque/new.txt").is_file());
    let l2 = snapshot(root, &layers[1]);
    assert_eq!(fs::metadata(l2.join("data/hardlink-src.txt")).unwrap().ino(), fs::metadata(l2.join("data/hardlink-dst.txt")).unwrap().ino());
}

fn xattr_opaque(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = [0u8; 16];
    let n = unsafe { libc::lgetxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn import_an_oci_layout_needs_no_registry() {
    let root = tempfile::tempdir().unwrap();
    let layout = test_image("busybox");
    // The test layouts name their image by a bare tag, so a name must be given.
    let err = fails(root.path(), &["import", layout.to_str().unwrap()]);
    assert!(err.contains("the image is tagged only \"latest\", not with a full reference: give a name for it"), "{err}");
    let out = ok(root.path(), &["import", layout.to_str().unwrap(), "--name", "offline/busybox:1"]);
    assert!(out.starts_with("docker.io/offline/busybox:1 sha256:"), "{out}");
    assert_eq!(ok(root.path(), &["list", "-q"]), "docker.io/offline/busybox:1\n");
    let image = inspect(root.path(), "offline/busybox:1");
    assert_eq!(image["config"]["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(snapshot(root.path(), &image["record"]["layers"][0]).join("bin/busybox").is_file());
}
