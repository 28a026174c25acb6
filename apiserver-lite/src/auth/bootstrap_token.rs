//! Bootstrap tokens, as kubeadm and kube-apiserver's `--enable-bootstrap-token-auth` use
//! them: a bearer token `ID.SECRET` (`[a-z0-9]{6}.[a-z0-9]{16}`) stands for the Secret
//! `kube-system/bootstrap-token-ID` of type `bootstrap.kubernetes.io/token` when that
//! Secret holds the same id and secret, allows authentication and has not expired. The
//! user is `system:bootstrap:ID` in `system:bootstrappers` plus the Secret's extra groups:
//! enough to ask for a node certificate, nothing more (see `authz`). The Secret lookup
//! goes through [`BootstrapSecrets`], so this module knows nothing of storage.

use std::collections::BTreeMap;

use super::authn::{AUTHENTICATED_GROUP, UserInfo};

pub const SECRET_NAMESPACE: &str = "kube-system";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const USER_PREFIX: &str = "system:bootstrap:";
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// Extra groups must be under this prefix, so a token can never name a powerful group.
pub const EXTRA_GROUP_PREFIX: &str = "system:bootstrappers:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootstrapTokenError {
    #[error("not a bootstrap token (ID.SECRET, [a-z0-9]{{6}}.[a-z0-9]{{16}})")]
    Format,
    #[error("no secret {SECRET_NAMESPACE}/{SECRET_PREFIX}{0}")]
    NoSecret(String),
    #[error("secret {SECRET_NAMESPACE}/{SECRET_PREFIX}{id}: {reason}")]
    BadSecret { id: String, reason: String },
    #[error("bootstrap token {0} has expired")]
    Expired(String),
    #[error("looking up the bootstrap token's secret failed: {0}")]
    Lookup(String),
}

/// A token split into its parts, each already checked for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// `ID.SECRET`, or why not.
pub fn parse(token: &str) -> Result<Token<'_>, BootstrapTokenError> {
    let (id, secret) = token.split_once('.').ok_or(BootstrapTokenError::Format)?;
    let ok = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok(id, 6) || !ok(secret, 16) {
        return Err(BootstrapTokenError::Format);
    }
    Ok(Token { id, secret })
}

/// A new random token (36 lowercase letters and digits, as kubeadm draws them).
pub fn generate() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(23);
    while out.len() < 23 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        // Only bytes below 252 (7 * 36): no bias towards the first letters.
        for b in bytes.into_iter().filter(|b| *b < 252) {
            if out.len() == 6 {
                out.push('.');
            }
            if out.len() < 23 {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A bootstrap-token Secret as storage has it: its type and decoded data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSecret {
    pub type_: String,
    pub data: BTreeMap<String, String>,
    /// Being deleted: no longer valid (kube-apiserver ignores such secrets).
    pub deleting: bool,
}

/// Finds the Secret behind a token. The server implements it over its store.
#[async_trait::async_trait]
pub trait BootstrapSecrets: Send + Sync {
    /// `kube-system/NAME`, or `None` when it does not exist; `Err` when storage could not
    /// answer (the token is then refused).
    async fn secret(&self, name: &str) -> Result<Option<TokenSecret>, String>;
}

/// The user `token` stands for at `now` (Unix seconds).
pub async fn authenticate(token: &str, secrets: &dyn BootstrapSecrets, now: i64) -> Result<UserInfo, BootstrapTokenError> {
    let token = parse(token)?;
    let secret = secrets.secret(&format!("{SECRET_PREFIX}{}", token.id)).await.map_err(BootstrapTokenError::Lookup)?;
    let secret = secret.filter(|s| !s.deleting).ok_or_else(|| BootstrapTokenError::NoSecret(token.id.to_string()))?;
    user_for(&token, &secret, now)
}

/// Check `secret` against `token`: kube-apiserver's bootstrap token authenticator.
pub fn user_for(token: &Token<'_>, secret: &TokenSecret, now: i64) -> Result<UserInfo, BootstrapTokenError> {
    let bad = |reason: &str| BootstrapTokenError::BadSecret { id: token.id.to_string(), reason: reason.to_string() };
    if secret.type_ != SECRET_TYPE {
        return Err(bad(&format!("its type is {:?}, not {SECRET_TYPE}", secret.type_)));
    }
    let field = |k: &str| secret.data.get(k).map(String::as_str).unwrap_or("");
    if field("token-id") != token.id {
        return Err(bad("its token-id does not match the token"));
    }
    // Constant time: the secret is what an attacker guesses.
    if !constant_time_eq(field("token-secret").as_bytes(), token.secret.as_bytes()) {
        return Err(bad("its token-secret does not match the token"));
    }
    if field("usage-bootstrap-authentication") != "true" {
        return Err(bad("it does not allow authentication (usage-bootstrap-authentication)"));
    }
    if let Some(expiration) = secret.data.get("expiration") {
        let at = time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339).map_err(|e| bad(&format!("its expiration {expiration:?} is not RFC 3339: {e}")))?;
        if now >= at.unix_timestamp() {
            return Err(BootstrapTokenError::Expired(token.id.to_string()));
        }
    }
    let mut groups = vec![BOOTSTRAPPERS_GROUP.to_string()];
    for group in field("auth-extra-groups").split(',').map(str::trim).filter(|g| !g.is_empty()) {
        if !group.starts_with(EXTRA_GROUP_PREFIX) {
            return Err(bad(&format!("auth-extra-groups: {group:?} does not start with {EXTRA_GROUP_PREFIX:?}")));
        }
        if !groups.iter().any(|g| g == group) {
            groups.push(group.to_string());
        }
    }
    groups.push(AUTHENTICATED_GROUP.to_string());
    Ok(UserInfo { name: format!("{USER_PREFIX}{}", token.id), groups })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    const NOW: i64 = 1_800_000_000;
    const TOKEN: &str = "abcdef.0123456789abcdef";

    fn secret(extra: &[(&str, &str)]) -> TokenSecret {
        let mut data: BTreeMap<String, String> = [("token-id", "abcdef"), ("token-secret", "0123456789abcdef"), ("usage-bootstrap-authentication", "true")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in extra {
            data.insert(k.to_string(), v.to_string());
        }
        TokenSecret { type_: SECRET_TYPE.into(), data, deleting: false }
    }

    #[derive(Default)]
    struct Secrets(Mutex<HashMap<String, TokenSecret>>);

    #[async_trait::async_trait]
    impl BootstrapSecrets for Secrets {
        async fn secret(&self, name: &str) -> Result<Option<TokenSecret>, String> {
            Ok(self.0.lock().unwrap().get(name).cloned())
        }
    }

    #[test]
    fn tokens_have_kubeadms_form() {
        assert_eq!(parse(TOKEN), Ok(Token { id: "abcdef", secret: "0123456789abcdef" }));
        for bad in ["abcdef0123456789abcdef", "abcde.0123456789abcdef", "abcdef.0123456789abcde", "ABCDEF.0123456789abcdef", "abcdef.0123456789abcdeF", "abcdef.0123456789abcdef.x", "", "eyJhbGciOi.x"] {
            assert_eq!(parse(bad), Err(BootstrapTokenError::Format), "{bad}");
        }
        let t = generate().unwrap();
        assert!(parse(&t).is_ok(), "{t}");
        assert_ne!(generate().unwrap(), t);
    }

    #[test]
    fn a_matching_secret_names_the_bootstrap_user() {
        let token = parse(TOKEN).unwrap();
        let user = user_for(&token, &secret(&[("auth-extra-groups", "system:bootstrappers:kubeadm:default-node-token")]), NOW).unwrap();
        assert_eq!(user, UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", AUTHENTICATED_GROUP]));
        let plain = user_for(&token, &secret(&[]), NOW).unwrap();
        assert_eq!(plain.groups, vec![BOOTSTRAPPERS_GROUP, AUTHENTICATED_GROUP]);
    }

    #[test]
    fn secrets_that_do_not_allow_the_token_refuse_it() {
        let token = parse(TOKEN).unwrap();
        let in_an_hour = time::OffsetDateTime::from_unix_timestamp(NOW + 3600).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
        let an_hour_ago = time::OffsetDateTime::from_unix_timestamp(NOW - 3600).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
        assert!(user_for(&token, &secret(&[("expiration", &in_an_hour)]), NOW).is_ok());
        assert_eq!(user_for(&token, &secret(&[("expiration", &an_hour_ago)]), NOW), Err(BootstrapTokenError::Expired("abcdef".into())));
        let refused = |s: TokenSecret, why: &str| match user_for(&token, &s, NOW) {
            Err(BootstrapTokenError::BadSecret { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{other:?}"),
        };
        refused(secret(&[("token-secret", "0123456789abcdee")]), "token-secret");
        refused(secret(&[("token-id", "zzzzzz")]), "token-id");
        refused(secret(&[("usage-bootstrap-authentication", "false")]), "usage-bootstrap-authentication");
        refused(secret(&[("expiration", "tomorrow")]), "RFC 3339");
        refused(secret(&[("auth-extra-groups", "system:masters")]), "auth-extra-groups");
        refused(TokenSecret { type_: "Opaque".into(), ..secret(&[]) }, "Opaque");
    }

    #[tokio::test]
    async fn the_secret_is_looked_up_by_the_tokens_id() {
        let secrets = Secrets::default();
        assert_eq!(authenticate(TOKEN, &secrets, NOW).await, Err(BootstrapTokenError::NoSecret("abcdef".into())));
        secrets.0.lock().unwrap().insert("bootstrap-token-abcdef".into(), secret(&[]));
        assert_eq!(authenticate(TOKEN, &secrets, NOW).await.unwrap().name, "system:bootstrap:abcdef");
        secrets.0.lock().unwrap().get_mut("bootstrap-token-abcdef").unwrap().deleting = true;
        assert!(authenticate(TOKEN, &secrets, NOW).await.is_err());
        assert_eq!(authenticate("not-a-token", &secrets, NOW).await, Err(BootstrapTokenError::Format));
    }
}
