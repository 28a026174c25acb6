//! The CRI server (`kubelet_rs::cri::server`) answering real gRPC clients on a unix socket:
//! runtime version, status and config, the not-yet-implemented RPCs, and the image service
//! against a registry on loopback (test_support::registry). Also `kubelet-rs cri` as a
//! process, stopped by SIGTERM.
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::runtime::v1::{
    AuthConfig, CgroupDriver, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, ListImagesRequest,
    CheckpointContainerRequest, NetworkConfig, PullImageRequest, RemoveImageRequest, RunPodSandboxRequest, RuntimeConfig, RuntimeConfigRequest,
    StatusRequest, UpdateRuntimeConfigRequest, VersionRequest,
};
use cri_api::{ImageServiceClient, RuntimeServiceClient};
use kubelet_rs::cri::config::CriConfig;
use kubelet_rs::cri::server::{self, ServeError};
use test_support::registry::{Auth, Registry};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;

/// A server in this process, with its root, state and CNI conf dir in a temp dir.
struct TestServer {
    config: CriConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(insecure: &[String]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CriConfig::new(dir.path().join("root"), dir.path().join("state"));
        config.cni_conf_dir = dir.path().join("net.d");
        config.cni_bin_dirs = vec![dir.path().join("cni-bin")];
        config.cni_cache_dir = dir.path().join("cni-cache");
        config.hosts_dir = dir.path().join("no-hosts");
        config.insecure_registries = insecure.to_vec();
        std::fs::create_dir_all(&config.cni_conf_dir).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(config.clone(), async {
            let _ = stopped.await;
        }));
        wait_for_socket(&config.socket).await;
        TestServer { config, stop: Some(stop), task: Some(task), _dir: dir }
    }

    async fn channel(&self) -> Channel {
        cri_api::connect(&self.config.socket).await.expect("connect to the CRI socket")
    }

    async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    /// Stops the server and checks it went cleanly and removed its socket.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap()).await;
        result.expect("server stops within 30s").expect("server task").expect("server ends without error");
        assert!(!self.config.socket.exists(), "socket {} left behind", self.config.socket.display());
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cri_api::connect(socket).await.is_err() {
        assert!(Instant::now() < deadline, "no CRI server on {} after 10s", socket.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec { image: image.into(), ..Default::default() })
}

fn network_condition(status: &cri_api::runtime::v1::StatusResponse) -> cri_api::runtime::v1::RuntimeCondition {
    let conditions = &status.status.as_ref().unwrap().conditions;
    let runtime = conditions.iter().find(|c| c.r#type == "RuntimeReady").expect("RuntimeReady condition");
    assert!(runtime.status, "{runtime:?}");
    conditions.iter().find(|c| c.r#type == "NetworkReady").expect("NetworkReady condition").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn version_status_config_and_unimplemented() {
    let server = TestServer::start(&[]).await;
    let mut rt = server.runtime().await;

    let v = rt.version(VersionRequest { version: "v1".into() }).await.unwrap().into_inner();
    assert_eq!(v.runtime_name, "kubelet-rs");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.version, "0.1.0");

    // At first start the service wrote the default network for our bridge; its plugins are
    // not in this test's (empty) plugin directory, so the network is not ready.
    let default = server.config.cni_conf_dir.join("10-kubelet-rs.conflist");
    assert!(default.exists(), "no default conflist was written");
    let net = network_condition(&rt.status(StatusRequest { verbose: false }).await.unwrap().into_inner());
    assert!(!net.status, "{net:?}");
    assert!(net.message.contains("krs-bridge"), "{}", net.message);

    // No network configuration at all.
    std::fs::remove_file(&default).unwrap();
    let status = rt.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    let net = network_condition(&status);
    assert!(!net.status, "{net:?}");
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(net.message.contains(&server.config.cni_conf_dir.display().to_string()), "{}", net.message);

    // A 1.1 list whose plugin is missing fails its STATUS check.
    let conf_dir = &server.config.cni_conf_dir;
    let list = |version: &str| {
        format!(r#"{{"cniVersion":"{version}","name":"podnet","plugins":[{{"type":"krs-bridge","bridge":"krs0"}}]}}"#)
    };
    std::fs::write(conf_dir.join("10-podnet.conflist"), list("1.1.0")).unwrap();
    let net = network_condition(&rt.status(StatusRequest { verbose: false }).await.unwrap().into_inner());
    assert!(!net.status, "{net:?}");
    assert!(net.message.contains("krs-bridge"), "{}", net.message);

    // A 1.0 list has no STATUS: ready as soon as it is there.
    std::fs::write(conf_dir.join("10-podnet.conflist"), list("1.0.0")).unwrap();
    let status = rt.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    let net = network_condition(&status);
    assert!(net.status, "{net:?}");
    let info: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    assert_eq!(info["network"], "podnet");

    let config = rt.runtime_config(RuntimeConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(config.linux.unwrap().cgroup_driver, CgroupDriver::Cgroupfs as i32);

    let update = UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig { network_config: Some(NetworkConfig { pod_cidr: "10.88.0.0/16".into() }) }),
    };
    rt.update_runtime_config(update).await.unwrap();
    let status = rt.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    let info: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    assert_eq!(info["podCIDR"], "10.88.0.0/16");

    let e = rt.run_pod_sandbox(RunPodSandboxRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "RunPodSandbox: config is missing");
    let e = rt.checkpoint_container(CheckpointContainerRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert_eq!(e.message(), "CheckpointContainer is not implemented yet by kubelet-rs");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_list_status_remove_and_fs_info() {
    let reg = tokio::task::spawn_blocking(|| {
        let reg = Registry::start(Auth::None);
        reg.push("busybox", "busybox:latest");
        reg
    })
    .await
    .unwrap();
    let server = TestServer::start(std::slice::from_ref(&reg.host)).await;
    let mut images = server.images().await;
    let reference = reg.reference("busybox:latest");

    let empty = images.image_fs_info(ImageFsInfoRequest {}).await.unwrap().into_inner();
    let used_empty = empty.image_filesystems[0].used_bytes.unwrap().value;

    let pulled = images.pull_image(PullImageRequest { image: spec(&reference), ..Default::default() }).await;
    let image_ref = pulled.unwrap_or_else(|e| panic!("pull {reference}: {e}\n{}", reg.log())).into_inner().image_ref;
    assert!(image_ref.starts_with("sha256:") && image_ref.len() == 71, "{image_ref}");

    // Listed once, by id, with its tag and its manifest digest.
    let list = images.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images;
    assert_eq!(list.len(), 1, "{list:?}");
    let image = &list[0];
    assert_eq!(image.id, image_ref);
    assert_eq!(image.repo_tags, vec![reference.clone()]);
    assert_eq!(image.repo_digests.len(), 1);
    assert!(image.repo_digests[0].starts_with(&format!("{}/busybox@sha256:", reg.host)), "{:?}", image.repo_digests);
    assert!(image.size > 100_000, "busybox is more than 100 kB: {}", image.size);
    assert_eq!(image.spec.as_ref().unwrap().image, image_ref);

    let filter = |s: &str| ListImagesRequest { filter: Some(ImageFilter { image: spec(s) }) };
    assert_eq!(images.list_images(filter(&image_ref)).await.unwrap().into_inner().images.len(), 1);
    assert_eq!(images.list_images(filter(&reg.reference("busybox:nope"))).await.unwrap().into_inner().images.len(), 0);

    // Status by tag, by repo digest and by id; absent images are empty answers.
    for name in [reference.clone(), image.repo_digests[0].clone(), image_ref.clone()] {
        let status = images.image_status(ImageStatusRequest { image: spec(&name), verbose: true }).await.unwrap().into_inner();
        assert_eq!(status.image.as_ref().map(|i| i.id.as_str()), Some(image_ref.as_str()), "{name}");
        let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
        assert_eq!(info["imageSpec"]["os"], "linux", "{info}");
    }
    let absent = ImageStatusRequest { image: spec(&reg.reference("other:1")), verbose: false };
    let status = images.image_status(absent).await.unwrap().into_inner();
    assert!(status.image.is_none() && status.info.is_empty(), "{status:?}");

    let with_image = images.image_fs_info(ImageFsInfoRequest {}).await.unwrap().into_inner();
    let fs = &with_image.image_filesystems[0];
    let images_dir = server.config.images_dir();
    assert_eq!(fs.fs_id.as_ref().unwrap().mountpoint, images_dir.display().to_string());
    assert!(fs.used_bytes.unwrap().value > used_empty + 100_000, "{fs:?} vs {used_empty}");
    assert!(fs.inodes_used.unwrap().value > 10, "{fs:?}");
    assert!(fs.timestamp > 0);

    // Removing is idempotent, and the content goes with the image.
    images.remove_image(RemoveImageRequest { image: spec(&reference) }).await.unwrap();
    images.remove_image(RemoveImageRequest { image: spec(&reference) }).await.unwrap();
    images.remove_image(RemoveImageRequest { image: spec(&image_ref) }).await.unwrap();
    assert!(images.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images.is_empty());
    let after = images.image_fs_info(ImageFsInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(after.image_filesystems[0].used_bytes.unwrap().value, used_empty);

    // Bad references are the caller's mistake, and say which.
    for bad in ["Bad/Name:x", "busybox@sha256:abc"] {
        let e = images.pull_image(PullImageRequest { image: spec(bad), ..Default::default() }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
        assert!(e.message().contains(bad), "{bad}: {}", e.message());
        let e = images.image_status(ImageStatusRequest { image: spec(bad), verbose: false }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
    }
    let e = images.pull_image(PullImageRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // A tag the registry does not have.
    let e = images
        .pull_image(PullImageRequest { image: spec(&reg.reference("busybox:missing")), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("busybox:missing"), "{}", e.message());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_with_auth_config() {
    let reg = tokio::task::spawn_blocking(|| {
        let reg = Registry::start(Auth::basic("alice", "s3cret"));
        reg.push("busybox", "private/busybox:1");
        reg
    })
    .await
    .unwrap();
    let server = TestServer::start(&[]).await;
    let mut images = server.images().await;
    let reference = reg.reference("private/busybox:1");

    let anonymous = PullImageRequest { image: spec(&reference), ..Default::default() };
    let e = images.pull_image(anonymous).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    let wrong = AuthConfig { username: "alice".into(), password: "wrong".into(), ..Default::default() };
    let e = images.pull_image(PullImageRequest { image: spec(&reference), auth: Some(wrong), ..Default::default() }).await;
    assert_eq!(e.unwrap_err().code(), Code::Unauthenticated);

    // `auth` is base64 of user:password, as in a Docker config.json.
    let auth = AuthConfig { auth: test_support::http::base64(b"alice:s3cret", false), ..Default::default() };
    let pulled = images.pull_image(PullImageRequest { image: spec(&reference), auth: Some(auth), ..Default::default() }).await;
    let image_ref = pulled.unwrap_or_else(|e| panic!("pull with auth: {e}\n{}", reg.log())).into_inner().image_ref;
    let status = images.image_status(ImageStatusRequest { image: spec(&reference), verbose: false }).await.unwrap();
    assert_eq!(status.into_inner().image.unwrap().id, image_ref);

    server.stop().await;
}

/// `kubelet-rs cri` replaces a stale socket, serves with mode 0660, and on SIGTERM stops
/// and removes the socket.
#[test]
fn binary_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/cri.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A socket file nobody listens on, as a killed server leaves.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(std::fs::symlink_metadata(&socket).unwrap().file_type().is_socket());

    let path = |p: &str| -> PathBuf { dir.path().join(p) };
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
        .arg("cri")
        .arg("--socket")
        .arg(&socket)
        .arg("--root")
        .arg(path("root"))
        .arg("--state-dir")
        .arg(path("state"))
        .arg("--cni-conf-dir")
        .arg(path("net.d"))
        .arg("--cni-bin-dir")
        .arg(path("bin"))
        .arg("--cni-cache-dir")
        .arg(path("cache"))
        .arg("--hosts-dir")
        .arg(path("hosts"))
        .stdin(Stdio::null())
        .spawn()
        .expect("start kubelet-rs cri");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let version = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(channel) = cri_api::connect(&socket).await
                && let Ok(v) = RuntimeServiceClient::new(channel).version(VersionRequest::default()).await
            {
                break Ok(v.into_inner());
            }
            if Instant::now() > deadline {
                break Err("no answer on the socket after 10s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // The client's connection goes with its runtime, so the server has none open to drain.
    drop(rt);
    let mode = std::fs::metadata(&socket).map(|m| m.permissions().mode() & 0o777);
    // SIGTERM to the child we spawned, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopping = Instant::now();
    let exit = test_support::wait_or_kill(&mut child, Duration::from_secs(30), &["kubelet-rs", "cri"]);
    assert!(stopping.elapsed() < Duration::from_secs(5), "stopping took {:?}", stopping.elapsed());

    assert_eq!(version.unwrap().runtime_name, "kubelet-rs");
    assert_eq!(mode.unwrap(), 0o660);
    assert!(exit.success(), "kubelet-rs cri exited with {exit:?}");
    assert!(!socket.exists(), "socket left behind");
}

/// A `registry_token` (a bearer token the caller got from the registry's token service) is
/// sent to the registry as it is.
#[tokio::test(flavor = "multi_thread")]
async fn pull_with_registry_token() {
    let reg = tokio::task::spawn_blocking(|| {
        let reg = Registry::start(Auth::token("alice", "s3cret", false));
        reg.push("busybox", "private/busybox:1");
        reg
    })
    .await
    .unwrap();
    let realm = reg.issuer.as_ref().unwrap().realm();
    let token = tokio::task::spawn_blocking(move || {
        let url = format!("{realm}?service={}&scope=repository:private/busybox:pull", test_support::token_issuer::SERVICE);
        let resp = test_support::http::get(&url, &[("Authorization", &test_support::http::basic_auth("alice", "s3cret"))]);
        resp.expect("token request").json()["token"].as_str().expect("a token").to_string()
    })
    .await
    .unwrap();
    let server = TestServer::start(&[]).await;
    let mut images = server.images().await;
    let reference = reg.reference("private/busybox:1");

    let e = images.pull_image(PullImageRequest { image: spec(&reference), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let auth = AuthConfig { registry_token: token, server_address: reg.host.clone(), ..Default::default() };
    let pulled = images.pull_image(PullImageRequest { image: spec(&reference), auth: Some(auth), ..Default::default() }).await;
    pulled.unwrap_or_else(|e| panic!("pull with a registry token: {e}\n{}", reg.log()));

    server.stop().await;
}
