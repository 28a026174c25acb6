//! Service account tokens for projected volumes, cached per request and renewed once 80 %
//! of their lifetime has passed (or after 24 hours), as the kubelet's token manager does, so
//! the file in the volume is always a valid token without a TokenRequest on every sync.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::objects::{IssuedToken, Objects, ObjectsError, TokenSpec};

const MAX_AGE_SECONDS: i64 = 24 * 60 * 60;

struct Cached {
    token: IssuedToken,
    issued_at: i64,
}

impl Cached {
    fn needs_refresh(&self, now: i64) -> bool {
        let lifetime = (self.token.expires_at - self.issued_at).max(0);
        now >= self.issued_at + lifetime * 8 / 10 || now >= self.issued_at + MAX_AGE_SECONDS
    }
}

#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<BTreeMap<TokenSpec, Cached>>,
}

impl TokenCache {
    /// A token for `spec` at unix time `now`: the cached one unless it is due for renewal.
    /// If renewal fails while the cached token is still valid, that one is used.
    pub async fn get(
        &self,
        objects: &dyn Objects,
        spec: &TokenSpec,
        now: i64,
    ) -> Result<String, ObjectsError> {
        let cached = self
            .tokens
            .lock()
            .unwrap()
            .get(spec)
            .map(|c| (c.needs_refresh(now), c.token.clone()));
        match cached {
            Some((false, token)) => Ok(token.token),
            Some((true, old)) => match objects.service_account_token(spec).await {
                Ok(token) => Ok(self.store(spec, token, now)),
                Err(e) if old.expires_at > now => {
                    tracing::warn!(
                        "renewing the token of service account {}/{}: {e}; using the current one",
                        spec.namespace,
                        spec.service_account
                    );
                    Ok(old.token)
                }
                Err(e) => Err(e),
            },
            None => {
                let token = objects.service_account_token(spec).await?;
                Ok(self.store(spec, token, now))
            }
        }
    }

    fn store(&self, spec: &TokenSpec, token: IssuedToken, now: i64) -> String {
        let value = token.token.clone();
        self.tokens.lock().unwrap().insert(
            spec.clone(),
            Cached {
                token,
                issued_at: now,
            },
        );
        value
    }

    /// Forget the tokens of a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        self.tokens
            .lock()
            .unwrap()
            .retain(|spec, _| spec.pod_uid != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::volumes::objects::FakeObjects;
    use k8s_openapi::jiff::Timestamp;

    #[tokio::test]
    async fn renewed_after_80_percent() {
        let objects = FakeObjects::default();
        let cache = TokenCache::default();
        let spec = TokenSpec {
            namespace: "ns".into(),
            service_account: "default".into(),
            audience: None,
            expiration_seconds: 1000,
            pod_name: "p".into(),
            pod_uid: "u".into(),
        };
        let now = Timestamp::now().as_second();
        assert_eq!(cache.get(&objects, &spec, now).await.unwrap(), "token-1");
        assert_eq!(
            cache.get(&objects, &spec, now + 799).await.unwrap(),
            "token-1"
        );
        assert_eq!(
            cache.get(&objects, &spec, now + 800).await.unwrap(),
            "token-2"
        );
        cache.forget_pod("u");
        assert_eq!(
            cache.get(&objects, &spec, now + 801).await.unwrap(),
            "token-3"
        );
        assert_eq!(objects.token_requests.lock().unwrap().len(), 3);
    }
}
