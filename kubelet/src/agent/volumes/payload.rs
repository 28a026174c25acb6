//! The files of configMap, secret, downwardAPI and projected volumes, computed from the API
//! objects (and token requests) with upstream's rules for items, modes and optional sources.

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource,
    SecretProjection, ServiceAccountTokenProjection,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, DownwardAPIVolumeSource, SecretVolumeSource,
};

use super::atomic_writer::{FileProjection, Payload};
use super::objects::{Objects, ObjectsError, TokenSpec};
use super::tokens::TokenCache;
use crate::agent::env::EnvContext;
use crate::agent::env::fields::{self, FieldError};

/// The mode of volume files when the pod sets none (0644, secrets too).
pub const DEFAULT_MODE: u32 = 0o644;
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    SecretKey(String),
    #[error("{path}: {source}")]
    Field { path: String, source: FieldError },
    #[error("projected volume source {0} is not supported by this kubelet")]
    Unsupported(&'static str),
    #[error(transparent)]
    Objects(#[from] ObjectsError),
}

/// What payloads are computed with.
pub struct Sources<'a> {
    pub objects: &'a dyn Objects,
    pub tokens: &'a TokenCache,
    pub ctx: &'a EnvContext,
    /// Unix seconds, for token renewal.
    pub now: i64,
}

fn mode(m: Option<i32>, default: u32) -> u32 {
    m.map(|m| m as u32 & 0o7777).unwrap_or(default)
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

pub async fn config_map(
    pod: &Pod,
    source: &ConfigMapVolumeSource,
    s: &Sources<'_>,
) -> Result<Payload, PayloadError> {
    let mut out = Payload::new();
    let name = source.name.as_str();
    let default = mode(source.default_mode, DEFAULT_MODE);
    add_config_map(
        &mut out,
        pod,
        name,
        source.items.as_deref(),
        source.optional == Some(true),
        default,
        s,
    )
    .await?;
    Ok(out)
}

pub async fn secret(
    pod: &Pod,
    source: &SecretVolumeSource,
    s: &Sources<'_>,
) -> Result<Payload, PayloadError> {
    let mut out = Payload::new();
    let name = source.secret_name.as_deref().unwrap_or_default();
    let default = mode(source.default_mode, DEFAULT_MODE);
    add_secret(
        &mut out,
        pod,
        name,
        source.items.as_deref(),
        source.optional == Some(true),
        default,
        s,
    )
    .await?;
    Ok(out)
}

pub fn downward_api(
    pod: &Pod,
    source: &DownwardAPIVolumeSource,
    s: &Sources<'_>,
) -> Result<Payload, PayloadError> {
    let mut out = Payload::new();
    add_downward(
        &mut out,
        pod,
        source.items.as_deref().unwrap_or_default(),
        mode(source.default_mode, DEFAULT_MODE),
        s,
    )?;
    Ok(out)
}

pub async fn projected(
    pod: &Pod,
    source: &ProjectedVolumeSource,
    s: &Sources<'_>,
) -> Result<Payload, PayloadError> {
    let mut out = Payload::new();
    let default = mode(source.default_mode, DEFAULT_MODE);
    for p in source.sources.iter().flatten() {
        if let Some(ConfigMapProjection {
            name,
            items,
            optional,
        }) = &p.config_map
        {
            add_config_map(
                &mut out,
                pod,
                name,
                items.as_deref(),
                *optional == Some(true),
                default,
                s,
            )
            .await?;
        }
        if let Some(SecretProjection {
            name,
            items,
            optional,
        }) = &p.secret
        {
            add_secret(
                &mut out,
                pod,
                name,
                items.as_deref(),
                *optional == Some(true),
                default,
                s,
            )
            .await?;
        }
        if let Some(d) = &p.downward_api {
            add_downward(
                &mut out,
                pod,
                d.items.as_deref().unwrap_or_default(),
                default,
                s,
            )?;
        }
        if let Some(t) = &p.service_account_token {
            add_token(&mut out, pod, t, default, s).await?;
        }
        if p.cluster_trust_bundle.is_some() {
            return Err(PayloadError::Unsupported("clusterTrustBundle"));
        }
    }
    Ok(out)
}

/// Items (or every key) of a map of files. `lookup` finds a key's bytes.
fn add_items(
    out: &mut Payload,
    keys: Vec<(String, Vec<u8>)>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default: u32,
    missing: impl Fn(&str) -> PayloadError,
) -> Result<(), PayloadError> {
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, data) in keys {
                out.insert(
                    key,
                    FileProjection {
                        data,
                        mode: default,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                match keys.iter().find(|(k, _)| *k == item.key) {
                    Some((_, data)) => {
                        out.insert(
                            item.path.clone(),
                            FileProjection {
                                data: data.clone(),
                                mode: mode(item.mode, default),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(missing(&item.key)),
                }
            }
        }
    }
    Ok(())
}

async fn add_config_map(
    out: &mut Payload,
    pod: &Pod,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default: u32,
    s: &Sources<'_>,
) -> Result<(), PayloadError> {
    let Some(cm) = s.objects.config_map(namespace(pod), name).await? else {
        return if optional {
            Ok(())
        } else {
            Err(PayloadError::ConfigMapNotFound(name.to_string()))
        };
    };
    let mut keys: Vec<(String, Vec<u8>)> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    keys.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    add_items(out, keys, items, optional, default, |k| {
        PayloadError::ConfigMapKey(k.to_string())
    })
}

async fn add_secret(
    out: &mut Payload,
    pod: &Pod,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default: u32,
    s: &Sources<'_>,
) -> Result<(), PayloadError> {
    let Some(secret) = s.objects.secret(namespace(pod), name).await? else {
        return if optional {
            Ok(())
        } else {
            Err(PayloadError::SecretNotFound(name.to_string()))
        };
    };
    let keys = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    add_items(out, keys, items, optional, default, |k| {
        PayloadError::SecretKey(k.to_string())
    })
}

fn add_downward(
    out: &mut Payload,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default: u32,
    s: &Sources<'_>,
) -> Result<(), PayloadError> {
    for item in items {
        let field_error = |source| PayloadError::Field {
            path: item.path.clone(),
            source,
        };
        let value = if let Some(f) = &item.field_ref {
            fields::field_value(pod, f, s.ctx).map_err(field_error)?
        } else if let Some(r) = &item.resource_field_ref {
            fields::resource_value(pod, r, None, s.ctx).map_err(field_error)?
        } else {
            String::new()
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: mode(item.mode, default),
            },
        );
    }
    Ok(())
}

async fn add_token(
    out: &mut Payload,
    pod: &Pod,
    t: &ServiceAccountTokenProjection,
    default: u32,
    s: &Sources<'_>,
) -> Result<(), PayloadError> {
    let spec = TokenSpec {
        namespace: namespace(pod).to_string(),
        service_account: pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
        audience: t.audience.clone().filter(|a| !a.is_empty()),
        expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
        pod_name: pod.metadata.name.clone().unwrap_or_default(),
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
    };
    let token = s.tokens.get(s.objects, &spec, s.now).await?;
    out.insert(
        t.path.clone(),
        FileProjection {
            data: token.into_bytes(),
            mode: default,
        },
    );
    Ok(())
}
