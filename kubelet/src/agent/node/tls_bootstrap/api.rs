//! The two calls bootstrapping makes on certificates.k8s.io/v1 CertificateSigningRequests,
//! and how it gets a client from a kubeconfig: traits, so the flow is tested with a fake;
//! implemented here over `kube::Client`.

use std::path::Path;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

/// A failed call, with the server's or client's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CsrCallError(pub String);

#[async_trait::async_trait]
pub trait CsrApi: Send + Sync {
    /// Create `csr` (its `generateName` gets a suffix); returns the created object.
    async fn create(&self, csr: &CertificateSigningRequest) -> Result<CertificateSigningRequest, CsrCallError>;
    async fn get(&self, name: &str) -> Result<CertificateSigningRequest, CsrCallError>;
}

/// A CSR client acting with the credentials of a kubeconfig file.
#[async_trait::async_trait]
pub trait CsrConnector: Send + Sync {
    async fn connect(&self, kubeconfig: &Path) -> Result<Box<dyn CsrApi>, CsrCallError>;
}

#[async_trait::async_trait]
impl CsrApi for kube::Api<CertificateSigningRequest> {
    async fn create(&self, csr: &CertificateSigningRequest) -> Result<CertificateSigningRequest, CsrCallError> {
        kube::Api::create(self, &Default::default(), csr).await.map_err(|e| CsrCallError(e.to_string()))
    }

    async fn get(&self, name: &str) -> Result<CertificateSigningRequest, CsrCallError> {
        kube::Api::get(self, name).await.map_err(|e| CsrCallError(e.to_string()))
    }
}

/// Connects with `kube`, as every other client of the node does.
pub struct KubeConnector;

#[async_trait::async_trait]
impl CsrConnector for KubeConnector {
    async fn connect(&self, kubeconfig: &Path) -> Result<Box<dyn CsrApi>, CsrCallError> {
        let client = apiserver_lite::controllers::kubeconfig_client(kubeconfig).await.map_err(|e| CsrCallError(e.to_string()))?;
        Ok(Box::new(kube::Api::<CertificateSigningRequest>::all(client)))
    }
}
