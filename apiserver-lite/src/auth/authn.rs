//! Authentication: who a request comes from. Like kube-apiserver, a verified client
//! certificate names the user (CN) and groups (O); otherwise an `Authorization: Bearer`
//! token is looked up among the static token file's and the server's own tokens, then
//! checked as a bootstrap token (`ID.SECRET`, see [`super::bootstrap_token`]) or a service
//! account token (see [`super::sa_token`]). Every authenticated user
//! is also in `system:authenticated`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, header};

use super::bootstrap_token::{self, BootstrapSecrets};
use super::sa_token::{BoundObjects, ServiceAccountTokens};
use super::token_file::{self, TokenFileError};

pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub const ANONYMOUS_USER: &str = "system:anonymous";

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
}

/// The authenticated user, as the authorizer and handlers see it (a request extension).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

/// The least privileged user, so a forgotten field never grants anything.
impl Default for UserInfo {
    fn default() -> Self {
        UserInfo::anonymous()
    }
}

impl UserInfo {
    pub fn new(name: impl Into<String>, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// Whoever reads the public endpoints without credentials.
    pub fn anonymous() -> UserInfo {
        UserInfo::new(ANONYMOUS_USER, &[UNAUTHENTICATED_GROUP])
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    fn authenticated(mut self) -> UserInfo {
        if !self.in_group(AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.to_string());
        }
        self
    }
}

/// Resolves credentials to users. Shared by all connections; tokens the server mints
/// (service account tokens, bootstrap) are added while it runs.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: RwLock<HashMap<String, UserInfo>>,
    service_accounts: Option<ServiceAccounts>,
    bootstrap: Option<BootstrapTokens>,
}

/// Where bootstrap tokens' Secrets are read.
struct BootstrapTokens(Arc<dyn BootstrapSecrets>);

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootstrapTokens")
    }
}

/// Service account token checking: the key that signs them and the objects they name.
struct ServiceAccounts {
    tokens: Arc<ServiceAccountTokens>,
    objects: Arc<dyn BoundObjects>,
}

impl std::fmt::Debug for ServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccounts")
            .field("key_id", &self.tokens.key().key_id())
            .finish()
    }
}

impl Authenticator {
    /// With `token_file`, its tokens are accepted (kube-apiserver's `--token-auth-file`).
    pub fn new(token_file: Option<&Path>) -> Result<Authenticator, AuthnError> {
        let mut tokens = HashMap::new();
        if let Some(path) = token_file {
            for (token, record) in token_file::load(path)? {
                let groups = record.groups.iter().map(String::as_str).collect::<Vec<_>>();
                tokens.insert(token, UserInfo::new(record.user, &groups));
            }
        }
        Ok(Authenticator {
            tokens: RwLock::new(tokens),
            service_accounts: None,
            bootstrap: None,
        })
    }

    /// Also accept service account tokens signed by `tokens` whose objects `objects` still
    /// has (kube-apiserver's `--service-account-key-file` authenticator).
    pub fn with_service_accounts(
        mut self,
        tokens: Arc<ServiceAccountTokens>,
        objects: Arc<dyn BoundObjects>,
    ) -> Authenticator {
        self.service_accounts = Some(ServiceAccounts { tokens, objects });
        self
    }

    /// Also accept bootstrap tokens whose Secrets `secrets` holds (kube-apiserver's
    /// `--enable-bootstrap-token-auth`).
    pub fn with_bootstrap_tokens(mut self, secrets: Arc<dyn BootstrapSecrets>) -> Authenticator {
        self.bootstrap = Some(BootstrapTokens(secrets));
        self
    }

    /// Accept `token` as `user` from now on (replacing an earlier meaning of it).
    pub fn add_token(&self, token: impl Into<String>, user: UserInfo) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.into(), user);
    }

    /// Stop accepting `token`; whether it was known.
    pub fn remove_token(&self, token: &str) -> bool {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token)
            .is_some()
    }

    pub fn authenticate_token(&self, token: &str) -> Option<UserInfo> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).cloned().map(UserInfo::authenticated)
    }

    /// The user a client certificate (DER, already verified against the CA by the TLS
    /// layer) names: CN is the user, each O a group. A certificate without CN names nobody.
    pub fn authenticate_cert(cert_der: &[u8]) -> Option<UserInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
        let (cn, groups) = super::pki::subject_names(&cert);
        let name = cn.filter(|cn| !cn.is_empty())?;
        Some(UserInfo { name, groups }.authenticated())
    }

    /// The request's user: the client certificate wins, then a bearer token; `None` when
    /// neither is valid.
    pub fn authenticate(
        &self,
        client_cert: Option<&[u8]>,
        headers: &HeaderMap,
    ) -> Option<UserInfo> {
        if let Some(user) = client_cert.and_then(Authenticator::authenticate_cert) {
            return Some(user);
        }
        bearer_token(headers).and_then(|token| self.authenticate_token(token))
    }

    /// [`Self::authenticate`], then bootstrap and service account tokens, which need
    /// storage lookups.
    pub async fn authenticate_request(
        &self,
        client_cert: Option<&[u8]>,
        headers: &HeaderMap,
    ) -> Option<UserInfo> {
        if let Some(user) = self.authenticate(client_cert, headers) {
            return Some(user);
        }
        let token = bearer_token(headers)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Some(bootstrap) = &self.bootstrap
            && bootstrap_token::parse(token).is_ok()
        {
            return match bootstrap_token::authenticate(token, bootstrap.0.as_ref(), now).await {
                Ok(user) => Some(user),
                Err(e) => {
                    tracing::debug!(error = %e, "bootstrap token refused");
                    None
                }
            };
        }
        let sa = self.service_accounts.as_ref()?;
        match sa
            .tokens
            .authenticate(token, sa.objects.as_ref(), now)
            .await
        {
            Ok(user) => Some(user),
            Err(e) => {
                // kube-apiserver logs why a token failed; the client only hears 401.
                tracing::debug!(error = %e, "bearer token refused");
                None
            }
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive, as
/// kube-apiserver reads it).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::pki::{self, Pki};
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn token_file_tokens_authenticate_with_their_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "s3cret,alice,42,\"dev,ops\"\n").unwrap();
        let authn = Authenticator::new(Some(&path)).unwrap();
        let user = authn.authenticate(None, &headers("Bearer s3cret")).unwrap();
        assert_eq!(
            user,
            UserInfo::new("alice", &["dev", "ops", AUTHENTICATED_GROUP])
        );
        assert_eq!(
            authn
                .authenticate(None, &headers("bearer s3cret"))
                .unwrap()
                .name,
            "alice"
        );
        assert!(authn.authenticate(None, &headers("Bearer wrong")).is_none());
        assert!(authn.authenticate(None, &headers("Basic s3cret")).is_none());
        assert!(authn.authenticate(None, &headers("Bearer ")).is_none());
        assert!(authn.authenticate(None, &HeaderMap::new()).is_none());
    }

    #[test]
    fn added_tokens_work_until_removed() {
        let authn = Authenticator::new(None).unwrap();
        authn.add_token(
            "minted",
            UserInfo::new("system:serviceaccount:default:x", &[]),
        );
        let user = authn.authenticate(None, &headers("Bearer minted")).unwrap();
        assert_eq!(user.groups, vec![AUTHENTICATED_GROUP.to_string()]);
        assert!(authn.remove_token("minted"));
        assert!(
            authn
                .authenticate(None, &headers("Bearer minted"))
                .is_none()
        );
    }

    #[test]
    fn client_cert_names_user_and_groups_and_wins_over_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pki::load_or_create(dir.path(), &[]).unwrap();
        let (cert, _key) = p
            .issue_client_cert("system:node:a", &["system:nodes"])
            .unwrap();
        let der = pki::cert_der("test", &cert).unwrap();
        let authn = Authenticator::new(None).unwrap();
        authn.add_token("t", UserInfo::new("someone-else", &[]));
        let user = authn
            .authenticate(Some(&der), &headers("Bearer t"))
            .unwrap();
        assert_eq!(
            user,
            UserInfo::new("system:node:a", &["system:nodes", AUTHENTICATED_GROUP])
        );
    }

    #[test]
    fn a_missing_token_file_is_an_error() {
        assert!(Authenticator::new(Some(Path::new("/nonexistent/t.csv"))).is_err());
    }
}
