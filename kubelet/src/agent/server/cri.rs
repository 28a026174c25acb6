//! [`StreamingRuntime`] over any CRI runtime: Exec, Attach and PortForward, each answering
//! the URL of the runtime's streaming server.

use async_trait::async_trait;
use cri_api::RuntimeServiceClient;
use cri_api::runtime::v1 as cri;
use cri_api::tonic::transport::Channel;

use super::backend::{StreamFlags, StreamingRuntime};

#[derive(Clone)]
pub struct CriStreaming {
    pub runtime: RuntimeServiceClient<Channel>,
}

#[async_trait]
impl StreamingRuntime for CriStreaming {
    async fn exec_url(&self, container_id: &str, command: &[String], f: StreamFlags) -> Result<String, String> {
        let req = cri::ExecRequest { container_id: container_id.into(), cmd: command.to_vec(), tty: f.tty, stdin: f.stdin, stdout: f.stdout, stderr: f.stderr };
        Ok(self.runtime.clone().exec(req).await.map_err(|e| e.message().to_string())?.into_inner().url)
    }

    async fn attach_url(&self, container_id: &str, f: StreamFlags) -> Result<String, String> {
        let req = cri::AttachRequest { container_id: container_id.into(), stdin: f.stdin, tty: f.tty, stdout: f.stdout, stderr: f.stderr };
        Ok(self.runtime.clone().attach(req).await.map_err(|e| e.message().to_string())?.into_inner().url)
    }

    async fn port_forward_url(&self, sandbox_id: &str, ports: &[i32]) -> Result<String, String> {
        let req = cri::PortForwardRequest { pod_sandbox_id: sandbox_id.into(), port: ports.to_vec() };
        Ok(self.runtime.clone().port_forward(req).await.map_err(|e| e.message().to_string())?.into_inner().url)
    }
}
