//! [`RuntimeFacts`] over any CRI runtime's gRPC services (Version, Status, ListImages).

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;
use cri_api::tonic::transport::Channel;
use cri_api::{ImageServiceClient, RuntimeServiceClient};
use k8s_openapi::api::core::v1::ContainerImage;

use super::conditions::{RuntimeCondition, RuntimeStatus};
use super::registration::RuntimeFacts;

/// The CRI's own API version the kubelet speaks.
const CRI_VERSION: &str = "v1";

#[derive(Clone)]
pub struct CriRuntimeFacts {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl CriRuntimeFacts {
    /// Both services over one channel (`cri_api::connect(socket)`).
    pub fn new(channel: Channel) -> CriRuntimeFacts {
        CriRuntimeFacts { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) }
    }
}

/// A runtime condition by type; a runtime that does not report it is taken as not ready,
/// as upstream does.
fn condition(status: &cri::RuntimeStatus, type_: &str) -> RuntimeCondition {
    match status.conditions.iter().find(|c| c.r#type == type_) {
        Some(c) => RuntimeCondition { ready: c.status, reason: c.reason.clone(), message: c.message.clone() },
        None => RuntimeCondition { ready: false, reason: "NotReported".into(), message: format!("the runtime did not report {type_}") },
    }
}

/// The images as the Node's status lists them: digests, then tags.
pub fn container_images(images: &[cri::Image]) -> Vec<ContainerImage> {
    images
        .iter()
        .map(|i| ContainerImage { names: Some(i.repo_digests.iter().chain(i.repo_tags.iter()).cloned().collect()), size_bytes: Some(i.size as i64) })
        .collect()
}

#[async_trait]
impl RuntimeFacts for CriRuntimeFacts {
    async fn version(&self) -> Result<String, String> {
        let v = self.runtime.clone().version(cri::VersionRequest { version: CRI_VERSION.into() }).await.map_err(|e| e.message().to_string())?.into_inner();
        Ok(format!("{}://{}", v.runtime_name, v.runtime_version))
    }

    async fn status(&self) -> Result<RuntimeStatus, String> {
        let s = self.runtime.clone().status(cri::StatusRequest { verbose: false }).await.map_err(|e| e.message().to_string())?.into_inner();
        let status = s.status.unwrap_or_default();
        Ok(RuntimeStatus { runtime: condition(&status, "RuntimeReady"), network: condition(&status, "NetworkReady") })
    }

    async fn images(&self) -> Result<Vec<ContainerImage>, String> {
        let list = self.images.clone().list_images(cri::ListImagesRequest { filter: None }).await.map_err(|e| e.message().to_string())?.into_inner();
        Ok(container_images(&list.images))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_images_convert() {
        let status = cri::RuntimeStatus {
            conditions: vec![
                cri::RuntimeCondition { r#type: "RuntimeReady".into(), status: true, ..Default::default() },
                cri::RuntimeCondition { r#type: "NetworkReady".into(), status: false, reason: "NetworkPluginNotReady".into(), message: "no cni".into() },
            ],
        };
        assert!(condition(&status, "RuntimeReady").ready);
        assert_eq!(condition(&status, "NetworkReady").reason, "NetworkPluginNotReady");
        assert!(!condition(&cri::RuntimeStatus::default(), "RuntimeReady").ready);
        let images = container_images(&[cri::Image { repo_tags: vec!["busybox:1".into()], repo_digests: vec!["busybox@sha256:ab".into()], size: 5, ..Default::default() }]);
        assert_eq!(images[0].names.as_ref().unwrap(), &["busybox@sha256:ab".to_string(), "busybox:1".to_string()]);
        assert_eq!(images[0].size_bytes, Some(5));
    }
}
