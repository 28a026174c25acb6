//! The API objects a pod's volumes and environment are built from (ConfigMaps, Secrets,
//! Services, service account tokens, claims and volumes), behind a trait so that env
//! resolution and volume setup are unit-tested against a fake instead of a server.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("token request for service account {namespace}/{name} returned no token")]
    NoToken { namespace: String, name: String },
}

/// A service account token from a TokenRequest and when it expires (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: i64,
}

/// What a TokenRequest asks for: a token of `service_account` for `audience` (the API
/// server's own audience when `None`), valid `expiration_seconds`, bound to the pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenSpec {
    pub namespace: String,
    pub service_account: String,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

/// Reads of the API objects a pod refers to. `Ok(None)` means the object does not exist.
#[async_trait]
pub trait Objects: Send + Sync {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ObjectsError>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectsError>;
    /// All services of the namespace.
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectsError>;
    /// A new token from the `serviceaccounts/<name>/token` subresource.
    async fn service_account_token(&self, spec: &TokenSpec) -> Result<IssuedToken, ObjectsError>;
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ObjectsError>;
    async fn persistent_volume(&self, name: &str)
    -> Result<Option<PersistentVolume>, ObjectsError>;
}

/// [`Objects`] read from the API server.
#[derive(Clone)]
pub struct ApiObjects {
    client: Client,
}

impl ApiObjects {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn api_error(what: String) -> impl FnOnce(kube::Error) -> ObjectsError {
    move |source| ObjectsError::Api { what, source }
}

#[async_trait]
impl Objects for ApiObjects {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ObjectsError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(api_error(format!("getting configmap {namespace}/{name}")))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectsError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(api_error(format!("getting secret {namespace}/{name}")))
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectsError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(api_error(format!("listing services in {namespace}")))?;
        Ok(list.items)
    }

    async fn service_account_token(&self, spec: &TokenSpec) -> Result<IssuedToken, ObjectsError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &spec.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: spec.audience.iter().cloned().collect(),
                expiration_seconds: Some(spec.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(spec.pod_name.clone()),
                    uid: Some(spec.pod_uid.clone()),
                }),
            },
            ..Default::default()
        };
        let what = format!(
            "requesting a token for service account {}/{}",
            spec.namespace, spec.service_account
        );
        let response = api
            .create_token_request(&spec.service_account, &PostParams::default(), &request)
            .await
            .map_err(api_error(what))?;
        let no_token = || ObjectsError::NoToken {
            namespace: spec.namespace.clone(),
            name: spec.service_account.clone(),
        };
        let status = response.status.ok_or_else(no_token)?;
        if status.token.is_empty() {
            return Err(no_token());
        }
        Ok(IssuedToken {
            token: status.token,
            expires_at: status.expiration_timestamp.0.as_second(),
        })
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ObjectsError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(api_error(format!(
            "getting persistentvolumeclaim {namespace}/{name}"
        )))
    }

    async fn persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, ObjectsError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(api_error(format!("getting persistentvolume {name}")))
    }
}

/// In-memory [`Objects`] for tests (here and in other modules): objects are keyed by
/// `namespace/name`; tokens are `token-<n>` for the n-th request, valid as asked.
#[derive(Default)]
pub struct FakeObjects {
    pub config_maps: Mutex<BTreeMap<String, ConfigMap>>,
    pub secrets: Mutex<BTreeMap<String, Secret>>,
    pub services: Mutex<Vec<Service>>,
    pub claims: Mutex<BTreeMap<String, PersistentVolumeClaim>>,
    pub volumes: Mutex<BTreeMap<String, PersistentVolume>>,
    /// Every token request, in order.
    pub token_requests: Mutex<Vec<TokenSpec>>,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl FakeObjects {
    pub fn add_config_map(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some(namespace.into());
        cm.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self.config_maps
            .lock()
            .unwrap()
            .insert(key(namespace, name), cm);
    }

    pub fn add_secret(&self, namespace: &str, name: &str, data: &[(&str, &[u8])]) {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some(namespace.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
                .collect(),
        );
        self.secrets.lock().unwrap().insert(key(namespace, name), s);
    }

    pub fn add_service(&self, service: Service) {
        self.services.lock().unwrap().push(service);
    }

    pub fn add_claim(&self, claim: PersistentVolumeClaim) {
        let k = key(
            claim.metadata.namespace.as_deref().unwrap_or_default(),
            claim.metadata.name.as_deref().unwrap_or_default(),
        );
        self.claims.lock().unwrap().insert(k, claim);
    }

    pub fn add_volume(&self, volume: PersistentVolume) {
        self.volumes
            .lock()
            .unwrap()
            .insert(volume.metadata.name.clone().unwrap_or_default(), volume);
    }
}

#[async_trait]
impl Objects for FakeObjects {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ObjectsError> {
        Ok(self
            .config_maps
            .lock()
            .unwrap()
            .get(&key(namespace, name))
            .cloned())
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectsError> {
        Ok(self
            .secrets
            .lock()
            .unwrap()
            .get(&key(namespace, name))
            .cloned())
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectsError> {
        let all = self.services.lock().unwrap();
        Ok(all
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect())
    }

    async fn service_account_token(&self, spec: &TokenSpec) -> Result<IssuedToken, ObjectsError> {
        let mut requests = self.token_requests.lock().unwrap();
        requests.push(spec.clone());
        Ok(IssuedToken {
            token: format!("token-{}", requests.len()),
            expires_at: Timestamp::now().as_second() + spec.expiration_seconds,
        })
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ObjectsError> {
        Ok(self
            .claims
            .lock()
            .unwrap()
            .get(&key(namespace, name))
            .cloned())
    }

    async fn persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, ObjectsError> {
        Ok(self.volumes.lock().unwrap().get(name).cloned())
    }
}
