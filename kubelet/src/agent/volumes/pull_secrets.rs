//! Image pull credentials from a pod's imagePullSecrets (`kubernetes.io/dockerconfigjson`
//! and the older `kubernetes.io/dockercfg`), matched to the registry of an image the way
//! the kubelet's keyring does: by host (with `*` wildcards and Docker Hub's aliases) and
//! path prefix, the most specific entry winning.

use base64::Engine;
use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

const DOCKER_HUB: &str = "docker.io";

/// The credentials for pulling `image`, from the first, most specific matching entry.
pub fn pull_auth(secrets: &[Secret], image: &str) -> Option<cri::AuthConfig> {
    let (host, repo) = image_location(image);
    let mut best: Option<(usize, cri::AuthConfig)> = None;
    for secret in secrets {
        for (key, entry) in entries(secret) {
            let Some(specificity) = matches(&key, &host, &repo) else {
                continue;
            };
            if best.as_ref().is_none_or(|(s, _)| specificity > *s) {
                best = Some((specificity, auth_config(&entry, &host)));
            }
        }
    }
    best.map(|(_, auth)| auth)
}

/// The `(registry key, entry)` pairs of a pull secret; other secrets have none.
fn entries(secret: &Secret) -> Vec<(String, Value)> {
    let data = secret.data.as_ref();
    let parsed = |key: &str| {
        data.and_then(|d| d.get(key))
            .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
    };
    let map = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => {
            parsed(".dockerconfigjson").and_then(|v| v.get("auths").cloned())
        }
        Some("kubernetes.io/dockercfg") => parsed(".dockercfg"),
        _ => None,
    };
    match map {
        Some(Value::Object(m)) => m.into_iter().collect(),
        _ => Vec::new(),
    }
}

fn auth_config(entry: &Value, host: &str) -> cri::AuthConfig {
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut auth = cri::AuthConfig {
        username: field("username"),
        password: field("password"),
        auth: field("auth"),
        identity_token: field("identitytoken"),
        server_address: host.to_string(),
        ..Default::default()
    };
    if auth.username.is_empty()
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth.auth.trim())
        && let Ok(decoded) = String::from_utf8(decoded)
        && let Some((user, pass)) = decoded.split_once(':')
    {
        auth.username = user.to_string();
        auth.password = pass.to_string();
    }
    auth
}

/// The registry host (Docker Hub as `docker.io`) and repository path of an image reference.
fn image_location(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or(image);
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let (host, path) = if !first.is_empty()
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        (normalize_host(first), rest.to_string())
    } else if first.is_empty() {
        (DOCKER_HUB.to_string(), format!("library/{rest}"))
    } else {
        (DOCKER_HUB.to_string(), name.to_string())
    };
    // Drop the tag: a ':' after the last '/'.
    let path = match path.rfind(':') {
        Some(i) if !path[i..].contains('/') => path[..i].to_string(),
        _ => path,
    };
    (host, path)
}

fn normalize_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_lowercase(),
    }
}

/// Whether a config key matches the image, and how specifically (longer is better).
fn matches(key: &str, host: &str, repo: &str) -> Option<usize> {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (key_host, key_path) = key.split_once('/').unwrap_or((key, ""));
    let key_host = normalize_host(key_host);
    // Docker Hub's legacy key `https://index.docker.io/v1/` names the API, not a repository.
    let key_path = if key_host == DOCKER_HUB && (key_path == "v1" || key_path.starts_with("v1/")) {
        ""
    } else {
        key_path.trim_end_matches('/')
    };
    if !host_matches(&key_host, host) {
        return None;
    }
    if !key_path.is_empty() && repo != key_path && !repo.starts_with(&format!("{key_path}/")) {
        return None;
    }
    Some(key_host.len() + key_path.len() + if key_host.contains('*') { 0 } else { 1000 })
}

/// `*.example.com` matches `a.example.com` (one label per `*`); ports must be equal.
fn host_matches(pattern: &str, host: &str) -> bool {
    let split = |h: &str| -> (String, String) {
        match h.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                (name.to_string(), port.to_string())
            }
            _ => (h.to_string(), String::new()),
        }
    };
    let (pattern_name, pattern_port) = split(pattern);
    let (host_name, host_port) = split(host);
    if pattern_port != host_port {
        return false;
    }
    let p: Vec<&str> = pattern_name.split('.').collect();
    let h: Vec<&str> = host_name.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .all(|(p, h)| *p == "*" || p.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn secret(kind: &str, key: &str, body: Value) -> Secret {
        let mut s = Secret {
            type_: Some(kind.into()),
            ..Default::default()
        };
        s.data = Some(
            [(
                key.to_string(),
                ByteString(serde_json::to_vec(&body).unwrap()),
            )]
            .into(),
        );
        s
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn registries_and_docker_hub_aliases() {
        let secrets = [
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                json!({"auths": {
                    "registry.example.com:5000": {"auth": b64("alice:pw1")},
                    "https://index.docker.io/v1/": {"username": "bob", "password": "pw2"},
                    "*.corp.io/team": {"auth": b64("carol:pw3")},
                }}),
            ),
            secret(
                "kubernetes.io/dockercfg",
                ".dockercfg",
                json!({"quay.io": {"auth": b64("dave:pw4")}}),
            ),
            secret(
                "Opaque",
                ".dockerconfigjson",
                json!({"auths": {"ghcr.io": {"auth": b64("eve:x")}}}),
            ),
        ];
        let user = |image: &str| {
            pull_auth(&secrets, image).map(|a| (a.username, a.password, a.server_address))
        };
        assert_eq!(
            user("registry.example.com:5000/app:1"),
            Some((
                "alice".into(),
                "pw1".into(),
                "registry.example.com:5000".into()
            ))
        );
        assert_eq!(user("registry.example.com/app"), None);
        assert_eq!(
            user("nginx"),
            Some(("bob".into(), "pw2".into(), "docker.io".into()))
        );
        assert_eq!(
            user("docker.io/library/nginx:1.27"),
            Some(("bob".into(), "pw2".into(), "docker.io".into()))
        );
        assert_eq!(
            user("index.docker.io/me/app").map(|u| u.0),
            Some("bob".into())
        );
        assert_eq!(
            user("x.corp.io/team/app").map(|u| u.0),
            Some("carol".into())
        );
        assert_eq!(user("x.corp.io/other/app"), None);
        assert_eq!(
            user("quay.io/org/app@sha256:abc").map(|u| u.0),
            Some("dave".into())
        );
        assert_eq!(user("ghcr.io/org/app"), None);
    }

    #[test]
    fn the_most_specific_key_wins() {
        let secrets = [secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            json!({"auths": {
                "docker.io": {"auth": b64("general:1")},
                "docker.io/me": {"auth": b64("mine:2")},
            }}),
        )];
        assert_eq!(pull_auth(&secrets, "me/app").unwrap().username, "mine");
        assert_eq!(pull_auth(&secrets, "you/app").unwrap().username, "general");
    }
}
