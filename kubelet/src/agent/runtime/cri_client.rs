//! [`PodRuntime`] over gRPC: the CRI `RuntimeService` and `ImageService` on one unix socket.

use std::path::Path;

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;
use cri_api::{ImageServiceClient, RuntimeServiceClient};
use tonic::transport::Channel;

use super::{PodRuntime, Result, RuntimeError};

/// A CRI runtime reached over its socket. Cloning is cheap (one shared HTTP/2 channel).
#[derive(Clone)]
pub struct CriRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl CriRuntime {
    pub async fn connect(socket: &Path) -> Result<Self> {
        let channel = cri_api::connect(socket)
            .await
            .map_err(|e| RuntimeError::Connect { path: socket.display().to_string(), message: e.to_string() })?;
        Ok(CriRuntime { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) })
    }

    // tonic clients take `&mut self`; clones share the channel.
    fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }
}

#[async_trait]
impl PodRuntime for CriRuntime {
    async fn version(&self) -> Result<cri::VersionResponse> {
        let req = cri::VersionRequest { version: "v1".into() };
        Ok(self.rt().version(req).await.map_err(|s| RuntimeError::call("Version", s))?.into_inner())
    }

    async fn status(&self) -> Result<cri::RuntimeStatus> {
        let resp = self.rt().status(cri::StatusRequest { verbose: false }).await.map_err(|s| RuntimeError::call("Status", s))?;
        resp.into_inner().status.ok_or(RuntimeError::Incomplete { call: "Status", field: "status" })
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        let req = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: runtime_handler.to_string() };
        let resp = self.rt().run_pod_sandbox(req).await.map_err(|s| RuntimeError::call("RunPodSandbox", s))?;
        Ok(resp.into_inner().pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::StopPodSandboxRequest { pod_sandbox_id: id.to_string() };
        self.rt().stop_pod_sandbox(req).await.map_err(|s| RuntimeError::call("StopPodSandbox", s))?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::RemovePodSandboxRequest { pod_sandbox_id: id.to_string() };
        self.rt().remove_pod_sandbox(req).await.map_err(|s| RuntimeError::call("RemovePodSandbox", s))?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let req = cri::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: false };
        let resp = self.rt().pod_sandbox_status(req).await.map_err(|s| RuntimeError::call("PodSandboxStatus", s))?;
        resp.into_inner().status.ok_or(RuntimeError::Incomplete { call: "PodSandboxStatus", field: "status" })
    }

    async fn list_pod_sandboxes(&self, filter: Option<cri::PodSandboxFilter>) -> Result<Vec<cri::PodSandbox>> {
        let resp = self.rt().list_pod_sandbox(cri::ListPodSandboxRequest { filter }).await.map_err(|s| RuntimeError::call("ListPodSandbox", s))?;
        Ok(resp.into_inner().items)
    }

    async fn create_container(&self, sandbox_id: &str, config: cri::ContainerConfig, sandbox_config: cri::PodSandboxConfig) -> Result<String> {
        let req = cri::CreateContainerRequest { pod_sandbox_id: sandbox_id.to_string(), config: Some(config), sandbox_config: Some(sandbox_config) };
        let resp = self.rt().create_container(req).await.map_err(|s| RuntimeError::call("CreateContainer", s))?;
        Ok(resp.into_inner().container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let req = cri::StartContainerRequest { container_id: id.to_string() };
        self.rt().start_container(req).await.map_err(|s| RuntimeError::call("StartContainer", s))?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let req = cri::StopContainerRequest { container_id: id.to_string(), timeout: timeout_seconds };
        self.rt().stop_container(req).await.map_err(|s| RuntimeError::call("StopContainer", s))?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let req = cri::RemoveContainerRequest { container_id: id.to_string() };
        self.rt().remove_container(req).await.map_err(|s| RuntimeError::call("RemoveContainer", s))?;
        Ok(())
    }

    async fn list_containers(&self, filter: Option<cri::ContainerFilter>) -> Result<Vec<cri::Container>> {
        let resp = self.rt().list_containers(cri::ListContainersRequest { filter }).await.map_err(|s| RuntimeError::call("ListContainers", s))?;
        Ok(resp.into_inner().containers)
    }

    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let req = cri::ContainerStatusRequest { container_id: id.to_string(), verbose: false };
        let resp = self.rt().container_status(req).await.map_err(|s| RuntimeError::call("ContainerStatus", s))?;
        resp.into_inner().status.ok_or(RuntimeError::Incomplete { call: "ContainerStatus", field: "status" })
    }

    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout_seconds: i64) -> Result<cri::ExecSyncResponse> {
        let req = cri::ExecSyncRequest { container_id: id.to_string(), cmd, timeout: timeout_seconds };
        Ok(self.rt().exec_sync(req).await.map_err(|s| RuntimeError::call("ExecSync", s))?.into_inner())
    }

    async fn exec(&self, request: cri::ExecRequest) -> Result<String> {
        Ok(self.rt().exec(request).await.map_err(|s| RuntimeError::call("Exec", s))?.into_inner().url)
    }

    async fn attach(&self, request: cri::AttachRequest) -> Result<String> {
        Ok(self.rt().attach(request).await.map_err(|s| RuntimeError::call("Attach", s))?.into_inner().url)
    }

    async fn port_forward(&self, request: cri::PortForwardRequest) -> Result<String> {
        Ok(self.rt().port_forward(request).await.map_err(|s| RuntimeError::call("PortForward", s))?.into_inner().url)
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let req = cri::ReopenContainerLogRequest { container_id: id.to_string() };
        self.rt().reopen_container_log(req).await.map_err(|s| RuntimeError::call("ReopenContainerLog", s))?;
        Ok(())
    }

    async fn pull_image(&self, image: &str, auth: Option<cri::AuthConfig>, sandbox_config: Option<cri::PodSandboxConfig>) -> Result<String> {
        let req = cri::PullImageRequest { image: Some(image_spec(image)), auth, sandbox_config };
        let resp = self.images.clone().pull_image(req).await.map_err(|s| RuntimeError::call("PullImage", s))?;
        Ok(resp.into_inner().image_ref)
    }

    async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        let req = cri::ImageStatusRequest { image: Some(image_spec(image)), verbose: false };
        let resp = self.images.clone().image_status(req).await.map_err(|s| RuntimeError::call("ImageStatus", s))?;
        Ok(resp.into_inner().image)
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec { image: image.to_string(), ..Default::default() }
}
