//! A container's environment as the kubelet builds it: `envFrom` (ConfigMaps and Secrets,
//! with prefixes), then `env` (values with `$(VAR)` references, ConfigMap and Secret keys,
//! downward API fields and resources), then the service variables of the services the pod
//! can see, for names the container did not define itself.

pub mod fields;
pub mod services;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::agent::expand::expand;
use crate::agent::volumes::objects::{Objects, ObjectsError};
use fields::FieldError;

/// What the environment needs beyond the pod and the API objects.
#[derive(Debug, Clone, Default)]
pub struct EnvContext {
    /// The pod's IPs, primary first (`status.podIP(s)`; the sandbox's, known before status is).
    pub pod_ips: Vec<String>,
    /// The node's IPs, primary first (`status.hostIP(s)`).
    pub host_ips: Vec<String>,
    /// The node's allocatable resources: what `limits.*` resourceFieldRefs report for a
    /// container without a limit.
    pub node_allocatable: BTreeMap<String, Quantity>,
}

/// A resolved environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedEnv {
    /// The variables in order, each name once.
    pub vars: Vec<(String, String)>,
    /// Things worth an event on the pod (envFrom keys skipped as invalid names).
    pub warnings: Vec<String>,
}

/// Why an environment cannot be built; the pod sync reports these as
/// CreateContainerConfigError with this message.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("env {name}: {source}")]
    Field { name: String, source: FieldError },
    #[error(transparent)]
    Objects(#[from] ObjectsError),
}

/// The environment of `container` in `pod`.
pub async fn resolve(
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
    objects: &dyn Objects,
) -> Result<ResolvedEnv, EnvError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let service_env = service_env(pod, &namespace, objects).await?;
    let mut env = Env::default();
    let mut warnings = Vec::new();
    let mut config_maps: BTreeMap<String, Option<ConfigMap>> = BTreeMap::new();
    let mut secrets: BTreeMap<String, Option<Secret>> = BTreeMap::new();

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let (kind, name, data) = if let Some(r) = &source.config_map_ref {
            let Some(cm) = config_map(&mut config_maps, objects, &namespace, &r.name).await? else {
                if r.optional == Some(true) {
                    continue;
                }
                return Err(EnvError::ConfigMapNotFound(r.name.clone()));
            };
            ("configMap", &r.name, cm.data.unwrap_or_default())
        } else if let Some(r) = &source.secret_ref {
            let Some(secret) = secret(&mut secrets, objects, &namespace, &r.name).await? else {
                if r.optional == Some(true) {
                    continue;
                }
                return Err(EnvError::SecretNotFound(r.name.clone()));
            };
            ("secret", &r.name, secret_strings(&secret))
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in data {
            let key = format!("{prefix}{key}");
            if valid_name(&key) {
                env.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }

    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = config_map(&mut config_maps, objects, &namespace, &r.name).await?
                else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::ConfigMapNotFound(r.name.clone()));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::ConfigMapKey {
                            key: r.key.clone(),
                            namespace: namespace.clone(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(s) = secret(&mut secrets, objects, &namespace, &r.name).await? else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::SecretNotFound(r.name.clone()));
                };
                match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::SecretKey {
                            key: r.key.clone(),
                            namespace: namespace.clone(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(f) = &from.field_ref {
                fields::field_value(pod, f, ctx).map_err(|source| EnvError::Field {
                    name: var.name.clone(),
                    source,
                })?
            } else if let Some(r) = &from.resource_field_ref {
                fields::resource_value(pod, r, Some(container), ctx).map_err(|source| {
                    EnvError::Field {
                        name: var.name.clone(),
                        source,
                    }
                })?
            } else {
                String::new()
            }
        } else {
            // References see earlier variables, then the service variables.
            let raw = var.value.as_deref().unwrap_or("");
            expand(raw, |name| {
                env.get(name).or_else(|| {
                    service_env
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                })
            })
        };
        env.set(var.name.clone(), value);
    }

    for (name, value) in service_env {
        if env.get(&name).is_none() {
            env.set(name, value);
        }
    }
    Ok(ResolvedEnv {
        vars: env.0,
        warnings,
    })
}

/// Variables in definition order; a redefinition replaces the value in place.
#[derive(Default)]
struct Env(Vec<(String, String)>);

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// Env var names as Kubernetes accepts them since relaxed validation (on by default from
/// 1.32): printable ASCII without `=`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

async fn service_env(
    pod: &Pod,
    namespace: &str,
    objects: &dyn Objects,
) -> Result<Vec<(String, String)>, EnvError> {
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
    let own = if links {
        objects.services(namespace).await?
    } else {
        Vec::new()
    };
    let default_ns = if namespace == services::MASTER_NAMESPACE && links {
        own.clone()
    } else {
        objects.services(services::MASTER_NAMESPACE).await?
    };
    Ok(services::service_variables(&services::visible_services(
        namespace, links, own, default_ns,
    )))
}

async fn config_map(
    cache: &mut BTreeMap<String, Option<ConfigMap>>,
    objects: &dyn Objects,
    namespace: &str,
    name: &str,
) -> Result<Option<ConfigMap>, EnvError> {
    if let Some(found) = cache.get(name) {
        return Ok(found.clone());
    }
    let found = objects.config_map(namespace, name).await?;
    cache.insert(name.to_string(), found.clone());
    Ok(found)
}

async fn secret(
    cache: &mut BTreeMap<String, Option<Secret>>,
    objects: &dyn Objects,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, EnvError> {
    if let Some(found) = cache.get(name) {
        return Ok(found.clone());
    }
    let found = objects.secret(namespace, name).await?;
    cache.insert(name.to_string(), found.clone());
    Ok(found)
}

/// A secret's data as strings (`stringData` is merged into `data` by the API server).
fn secret_strings(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

#[cfg(test)]
mod tests;
