//! A pull's CRI `AuthConfig` as credentials for the registry client, as containerd reads it:
//! `username`/`password` first, then `identity_token` (as the password of an empty user),
//! then `auth` (base64 of `user:password`); a `registry_token` is sent as a bearer token to
//! the registry (not to mirrors) until the registry asks for another. An `AuthConfig` for
//! another `server_address` than the image's registry is not sent anywhere. No `AuthConfig`
//! means anonymous.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cri_api::runtime::v1::AuthConfig;
use images::reference::Reference;
use images::registry::auth::normalise_registry;
use images::registry::{Anonymous, Credential, Credentials, StaticCredentials};
use tracing::warn;

use super::image_service::ImageServiceError;

/// What a pull authenticates with.
pub(super) struct PullAuth {
    pub credentials: Arc<dyn Credentials>,
    pub registry_token: Option<String>,
}

impl PullAuth {
    fn anonymous() -> PullAuth {
        PullAuth { credentials: Arc::new(Anonymous), registry_token: None }
    }
}

pub(super) fn pull_auth(auth: Option<&AuthConfig>, reference: &Reference) -> Result<PullAuth, ImageServiceError> {
    let Some(auth) = auth else { return Ok(PullAuth::anonymous()) };
    if !auth.server_address.is_empty() && normalise_registry(&auth.server_address) != normalise_registry(reference.registry()) {
        warn!(server = %auth.server_address, image = %reference, "auth config is for another registry; pulling anonymously");
        return Ok(PullAuth::anonymous());
    }
    let registry_token = Some(auth.registry_token.clone()).filter(|t| !t.is_empty());
    let Some(cred) = credential(auth)? else { return Ok(PullAuth { registry_token, ..PullAuth::anonymous() }) };
    let mut map = HashMap::new();
    map.insert(reference.registry().to_string(), cred.clone());
    map.insert(reference.registry_host().to_string(), cred);
    Ok(PullAuth { credentials: Arc::new(StaticCredentials(map)), registry_token })
}

fn credential(auth: &AuthConfig) -> Result<Option<Credential>, ImageServiceError> {
    if !auth.username.is_empty() {
        return Ok(Some(Credential { username: auth.username.clone(), password: auth.password.clone() }));
    }
    if !auth.identity_token.is_empty() {
        return Ok(Some(Credential { username: String::new(), password: auth.identity_token.clone() }));
    }
    if !auth.auth.is_empty() {
        let bad = || ImageServiceError::Auth("field auth is not base64 of user:password".into());
        let raw = B64.decode(auth.auth.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (username, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential { username: username.into(), password: password.into() }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(auth: &AuthConfig, image: &str, registry: &str) -> Option<Credential> {
        pull_auth(Some(auth), &Reference::parse(image).unwrap()).unwrap().credentials.lookup(registry)
    }

    #[test]
    fn username_identity_token_and_auth_become_credentials() {
        let cred = |u: &str, p: &str| Some(Credential { username: u.into(), password: p.into() });
        let a = AuthConfig { username: "u".into(), password: "p".into(), ..Default::default() };
        assert_eq!(lookup(&a, "localhost:5000/app", "localhost:5000"), cred("u", "p"));
        assert_eq!(lookup(&a, "busybox", "registry-1.docker.io"), cred("u", "p"));
        let a = AuthConfig { auth: B64.encode("v:w:x"), ..Default::default() };
        assert_eq!(lookup(&a, "ghcr.io/o/app", "ghcr.io"), cred("v", "w:x"));
        let a = AuthConfig { identity_token: "tok".into(), ..Default::default() };
        assert_eq!(lookup(&a, "ghcr.io/o/app", "ghcr.io"), cred("", "tok"));
        assert_eq!(lookup(&AuthConfig::default(), "ghcr.io/o/app", "ghcr.io"), None);
    }

    #[test]
    fn other_servers_and_bad_auth() {
        let a = AuthConfig {
            username: "u".into(),
            password: "p".into(),
            server_address: "https://quay.io".into(),
            ..Default::default()
        };
        assert_eq!(lookup(&a, "ghcr.io/o/app", "ghcr.io"), None);
        let a = AuthConfig { server_address: "https://index.docker.io/v1/".into(), ..a };
        assert!(lookup(&a, "busybox", "registry-1.docker.io").is_some());
        let reference = Reference::parse("busybox").unwrap();
        let bad = AuthConfig { auth: "%%%".into(), ..Default::default() };
        let e = pull_auth(Some(&bad), &reference).err().unwrap();
        assert!(e.to_string().contains("base64"), "{e}");
        let token = AuthConfig { registry_token: "t".into(), ..Default::default() };
        let auth = pull_auth(Some(&token), &reference).unwrap();
        assert_eq!(auth.registry_token.as_deref(), Some("t"));
        assert_eq!(auth.credentials.lookup("docker.io"), None);
    }
}
