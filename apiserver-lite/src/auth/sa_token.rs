//! Service account tokens as kube-apiserver issues them for a TokenRequest: a JWT (see
//! [`super::jwt`]) naming the service account (and the pod it is bound to) by name and uid,
//! for a set of audiences and a limited time. A token authenticates as
//! `system:serviceaccount:NS:NAME` only while it is signed by this server, unexpired, meant
//! for this server (its audience holds the issuer URL), and the objects it names still
//! exist with the same uids: deleting or recreating the service account or the pod
//! revokes it. Those lookups go through [`BoundObjects`], so this module knows nothing of
//! storage.

use serde::{Deserialize, Serialize};

use super::authn::{AUTHENTICATED_GROUP, UserInfo};
use super::jwt::{JwtError, SigningKey};

/// The issuer (`iss`) of every token, and the audience the API server itself accepts:
/// kube-apiserver's default `--service-account-issuer` for a `cluster.local` domain.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// TokenRequest refuses shorter lives (kube-apiserver: "less than 10 minutes").
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// kube-apiserver's cap: 2^32 seconds.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// Clock skew allowed on `exp` and `nbf`, and how long a deleted object's tokens stay
/// valid after its deletion time (go-jose's default leeway, which kube-apiserver uses).
pub const LEEWAY_SECONDS: i64 = 60;
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
pub const USER_PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, thiserror::Error)]
pub enum SaTokenError {
    #[error("service account token: {0}")]
    Jwt(#[from] JwtError),
    #[error("service account token claims are incomplete: {0}")]
    Claims(String),
    #[error("token issuer {0:?} is not this server's ({ISSUER})")]
    Issuer(String),
    #[error("token audiences {0:?} do not include this server's")]
    Audience(Vec<String>),
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotYetValid,
    #[error("service account {namespace}/{name} has been deleted")]
    ServiceAccountDeleted { namespace: String, name: String },
    #[error("service account UID ({live}) does not match claim ({claimed})")]
    ServiceAccountUid { live: String, claimed: String },
    #[error(
        "service account token has been invalidated: its {kind} {namespace}/{name} is gone or was replaced"
    )]
    Invalidated {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("looking up the token's objects failed: {0}")]
    Lookup(String),
}

/// An object a token names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` private claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The node the bound pod runs on (kube-apiserver adds it since 1.30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// A token's claims, in kube-apiserver's layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    pub nbf: i64,
    pub sub: String,
}

/// RFC 7519 allows `aud` as a single string.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Aud::deserialize(d)? {
        Aud::One(a) => vec![a],
        Aud::Many(a) => a,
    })
}

/// What a token is requested for (already validated and defaulted by the caller).
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub pod: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
    /// Empty means the API server's own audience.
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
}

/// The kinds of object a token can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundKind {
    ServiceAccount,
    Pod,
}

/// What storage says about a named object now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveObject {
    pub uid: String,
    /// `metadata.deletionTimestamp` as Unix seconds, when deletion has begun.
    pub deletion_timestamp: Option<i64>,
}

/// Looks up the objects tokens are bound to. The server implements it over its store.
#[async_trait::async_trait]
pub trait BoundObjects: Send + Sync {
    /// The object, or `None` when it does not exist; `Err` when storage could not answer
    /// (the token is then refused: better a retry than a revoked token let through).
    async fn lookup(
        &self,
        kind: BoundKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<LiveObject>, String>;
}

/// Issues and checks service account tokens with one signing key.
#[derive(Debug)]
pub struct ServiceAccountTokens {
    key: SigningKey,
}

impl ServiceAccountTokens {
    pub fn new(key: SigningKey) -> ServiceAccountTokens {
        ServiceAccountTokens { key }
    }

    /// With a key of its own, in memory only (tests; the server loads `sa.key`).
    pub fn ephemeral() -> Result<ServiceAccountTokens, JwtError> {
        Ok(ServiceAccountTokens::new(SigningKey::generate()?))
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// A signed token for `spec`, issued at `now` (Unix seconds); with its claims.
    pub fn issue(&self, spec: &TokenSpec, now: i64) -> Result<(String, Claims), SaTokenError> {
        let audiences = if spec.audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            spec.audiences.clone()
        };
        let claims = Claims {
            aud: audiences,
            exp: now + spec.expiration_seconds,
            iat: now,
            iss: ISSUER.to_string(),
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaims {
                namespace: spec.namespace.clone(),
                serviceaccount: spec.service_account.clone(),
                pod: spec.pod.clone(),
                node: spec.node.clone(),
            },
            nbf: now,
            sub: format!(
                "{USER_PREFIX}{}:{}",
                spec.namespace, spec.service_account.name
            ),
        };
        let value =
            serde_json::to_value(&claims).map_err(|e| SaTokenError::Claims(e.to_string()))?;
        Ok((self.key.sign(&value)?, claims))
    }

    /// The claims of a token this server signed for itself, valid at `now`: signature,
    /// issuer, audience and time. Bound objects are [`Self::authenticate`]'s to check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, SaTokenError> {
        let value = self.key.verify(token)?;
        let claims: Claims =
            serde_json::from_value(value).map_err(|e| SaTokenError::Claims(e.to_string()))?;
        if claims.iss != ISSUER {
            return Err(SaTokenError::Issuer(claims.iss));
        }
        if !claims.aud.iter().any(|a| a == ISSUER) {
            return Err(SaTokenError::Audience(claims.aud));
        }
        if now > claims.exp + LEEWAY_SECONDS {
            return Err(SaTokenError::Expired);
        }
        if now + LEEWAY_SECONDS < claims.nbf {
            return Err(SaTokenError::NotYetValid);
        }
        let k = &claims.kubernetes;
        if k.namespace.is_empty()
            || k.serviceaccount.name.is_empty()
            || claims.sub != format!("{USER_PREFIX}{}:{}", k.namespace, k.serviceaccount.name)
        {
            return Err(SaTokenError::Claims(format!(
                "subject {:?} does not match the kubernetes.io claim",
                claims.sub
            )));
        }
        Ok(claims)
    }

    /// The user `token` stands for at `now`, if it is valid and its service account (and
    /// bound pod) still exist with the uids it names.
    pub async fn authenticate(
        &self,
        token: &str,
        objects: &dyn BoundObjects,
        now: i64,
    ) -> Result<UserInfo, SaTokenError> {
        let claims = self.verify(token, now)?;
        let k = &claims.kubernetes;
        // A deletion that began within the leeway still counts as alive, as kube-apiserver.
        let deleted = |o: &LiveObject| {
            o.deletion_timestamp
                .is_some_and(|t| t < now - LEEWAY_SECONDS)
        };
        let sa = objects
            .lookup(
                BoundKind::ServiceAccount,
                &k.namespace,
                &k.serviceaccount.name,
            )
            .await
            .map_err(SaTokenError::Lookup)?;
        match sa {
            Some(sa) if deleted(&sa) => {
                return Err(SaTokenError::ServiceAccountDeleted {
                    namespace: k.namespace.clone(),
                    name: k.serviceaccount.name.clone(),
                });
            }
            None => {
                return Err(SaTokenError::ServiceAccountDeleted {
                    namespace: k.namespace.clone(),
                    name: k.serviceaccount.name.clone(),
                });
            }
            Some(sa) if sa.uid != k.serviceaccount.uid => {
                return Err(SaTokenError::ServiceAccountUid {
                    live: sa.uid,
                    claimed: k.serviceaccount.uid.clone(),
                });
            }
            Some(_) => {}
        }
        if let Some(pod_ref) = &k.pod {
            let pod = objects
                .lookup(BoundKind::Pod, &k.namespace, &pod_ref.name)
                .await
                .map_err(SaTokenError::Lookup)?;
            if !pod.is_some_and(|p| !deleted(&p) && p.uid == pod_ref.uid) {
                return Err(SaTokenError::Invalidated {
                    kind: "pod",
                    namespace: k.namespace.clone(),
                    name: pod_ref.name.clone(),
                });
            }
        }
        Ok(user_info(&k.namespace, &k.serviceaccount.name))
    }
}

/// The user and groups of a service account, as kube-apiserver names them.
pub fn user_info(namespace: &str, name: &str) -> UserInfo {
    UserInfo::new(
        format!("{USER_PREFIX}{namespace}:{name}"),
        &[
            SERVICE_ACCOUNTS_GROUP,
            &format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
            AUTHENTICATED_GROUP,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    const NOW: i64 = 1_800_000_000;

    /// Objects by (kind, name) in one namespace.
    #[derive(Default)]
    struct Objects(Mutex<HashMap<(&'static str, String), LiveObject>>);

    impl Objects {
        fn put(&self, kind: &'static str, name: &str, uid: &str, deleted: Option<i64>) {
            self.0.lock().unwrap().insert(
                (kind, name.into()),
                LiveObject {
                    uid: uid.into(),
                    deletion_timestamp: deleted,
                },
            );
        }
        fn remove(&self, kind: &'static str, name: &str) {
            self.0.lock().unwrap().remove(&(kind, name.to_string()));
        }
    }

    #[async_trait::async_trait]
    impl BoundObjects for Objects {
        async fn lookup(
            &self,
            kind: BoundKind,
            namespace: &str,
            name: &str,
        ) -> Result<Option<LiveObject>, String> {
            assert_eq!(namespace, "ns");
            let kind = match kind {
                BoundKind::ServiceAccount => "sa",
                BoundKind::Pod => "pod",
            };
            Ok(self
                .0
                .lock()
                .unwrap()
                .get(&(kind, name.to_string()))
                .cloned())
        }
    }

    fn spec(audiences: &[&str], pod: Option<(&str, &str)>) -> TokenSpec {
        TokenSpec {
            namespace: "ns".into(),
            service_account: ObjectRef {
                name: "robot".into(),
                uid: "sa-uid".into(),
            },
            pod: pod.map(|(name, uid)| ObjectRef {
                name: name.into(),
                uid: uid.into(),
            }),
            node: None,
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: DEFAULT_EXPIRATION_SECONDS,
        }
    }

    fn tokens() -> ServiceAccountTokens {
        ServiceAccountTokens::ephemeral().unwrap()
    }

    #[test]
    fn claims_have_kube_apiserver_layout() {
        let t = tokens();
        let (token, claims) = t.issue(&spec(&[], Some(("web", "pod-uid"))), NOW).unwrap();
        let raw = t.key().verify(&token).unwrap();
        assert_eq!(raw["iss"], ISSUER);
        assert_eq!(raw["sub"], "system:serviceaccount:ns:robot");
        assert_eq!(raw["aud"], serde_json::json!([ISSUER]));
        assert_eq!(
            (
                raw["iat"].as_i64(),
                raw["nbf"].as_i64(),
                raw["exp"].as_i64()
            ),
            (Some(NOW), Some(NOW), Some(NOW + 3600))
        );
        assert_eq!(
            raw["kubernetes.io"],
            serde_json::json!({"namespace": "ns", "serviceaccount": {"name": "robot", "uid": "sa-uid"}, "pod": {"name": "web", "uid": "pod-uid"}})
        );
        assert_eq!(
            uuid::Uuid::parse_str(raw["jti"].as_str().unwrap())
                .unwrap()
                .to_string(),
            claims.jti
        );
        // Two tokens for the same request differ by jti.
        assert_ne!(t.issue(&spec(&[], None), NOW).unwrap().1.jti, claims.jti);
    }

    #[test]
    fn expiry_and_not_before_allow_a_minute_of_skew() {
        let t = tokens();
        let (token, _) = t.issue(&spec(&[], None), NOW).unwrap();
        assert!(t.verify(&token, NOW + 3600 + LEEWAY_SECONDS).is_ok());
        assert!(matches!(
            t.verify(&token, NOW + 3600 + LEEWAY_SECONDS + 1),
            Err(SaTokenError::Expired)
        ));
        assert!(t.verify(&token, NOW - LEEWAY_SECONDS).is_ok());
        assert!(matches!(
            t.verify(&token, NOW - LEEWAY_SECONDS - 1),
            Err(SaTokenError::NotYetValid)
        ));
    }

    #[test]
    fn only_tokens_for_this_server_are_accepted() {
        let t = tokens();
        let (vault, _) = t.issue(&spec(&["vault"], None), NOW).unwrap();
        assert!(
            matches!(t.verify(&vault, NOW), Err(SaTokenError::Audience(a)) if a == vec!["vault".to_string()])
        );
        let (both, _) = t.issue(&spec(&["vault", ISSUER], None), NOW).unwrap();
        assert!(t.verify(&both, NOW).is_ok());
        // Signed by us, but claiming another issuer.
        let mut claims = serde_json::to_value(t.issue(&spec(&[], None), NOW).unwrap().1).unwrap();
        claims["iss"] = "https://elsewhere".into();
        let foreign = t.key().sign(&claims).unwrap();
        assert!(matches!(
            t.verify(&foreign, NOW),
            Err(SaTokenError::Issuer(_))
        ));
        // A subject that disagrees with the private claim.
        claims["iss"] = ISSUER.into();
        claims["sub"] = "system:serviceaccount:kube-system:admin".into();
        assert!(matches!(
            t.verify(&t.key().sign(&claims).unwrap(), NOW),
            Err(SaTokenError::Claims(_))
        ));
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let t = tokens();
        let (token, _) = t.issue(&spec(&[], None), NOW).unwrap();
        let mut bytes = token.into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            t.verify(&tampered, NOW),
            Err(SaTokenError::Jwt(_))
        ));
        let (other, _) = tokens().issue(&spec(&[], None), NOW).unwrap();
        assert!(matches!(
            t.verify(&other, NOW),
            Err(SaTokenError::Jwt(JwtError::Signature))
        ));
    }

    #[tokio::test]
    async fn authenticates_while_the_service_account_lives() {
        let t = tokens();
        let objects = Objects::default();
        objects.put("sa", "robot", "sa-uid", None);
        let (token, _) = t.issue(&spec(&[], None), NOW).unwrap();
        let user = t.authenticate(&token, &objects, NOW).await.unwrap();
        assert_eq!(
            user,
            UserInfo::new(
                "system:serviceaccount:ns:robot",
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:ns",
                    AUTHENTICATED_GROUP
                ]
            )
        );
        // Being deleted: still valid within the leeway, not after.
        objects.put("sa", "robot", "sa-uid", Some(NOW - 10));
        assert!(t.authenticate(&token, &objects, NOW).await.is_ok());
        objects.put("sa", "robot", "sa-uid", Some(NOW - LEEWAY_SECONDS - 1));
        assert!(matches!(
            t.authenticate(&token, &objects, NOW).await,
            Err(SaTokenError::ServiceAccountDeleted { .. })
        ));
        objects.remove("sa", "robot");
        assert!(matches!(
            t.authenticate(&token, &objects, NOW).await,
            Err(SaTokenError::ServiceAccountDeleted { .. })
        ));
        // Recreated under the same name: another uid.
        objects.put("sa", "robot", "new-uid", None);
        assert!(matches!(
            t.authenticate(&token, &objects, NOW).await,
            Err(SaTokenError::ServiceAccountUid { .. })
        ));
    }

    #[tokio::test]
    async fn a_bound_token_dies_with_its_pod() {
        let t = tokens();
        let objects = Objects::default();
        objects.put("sa", "robot", "sa-uid", None);
        objects.put("pod", "web", "pod-uid", None);
        let (token, _) = t.issue(&spec(&[], Some(("web", "pod-uid"))), NOW).unwrap();
        assert!(t.authenticate(&token, &objects, NOW).await.is_ok());
        objects.put("pod", "web", "other-uid", None);
        assert!(matches!(
            t.authenticate(&token, &objects, NOW).await,
            Err(SaTokenError::Invalidated { kind: "pod", .. })
        ));
        objects.remove("pod", "web");
        assert!(matches!(
            t.authenticate(&token, &objects, NOW).await,
            Err(SaTokenError::Invalidated { .. })
        ));
    }

    #[tokio::test]
    async fn a_failed_lookup_refuses_the_token() {
        struct Down;
        #[async_trait::async_trait]
        impl BoundObjects for Down {
            async fn lookup(
                &self,
                _: BoundKind,
                _: &str,
                _: &str,
            ) -> Result<Option<LiveObject>, String> {
                Err("etcd unreachable".into())
            }
        }
        let t = tokens();
        let (token, _) = t.issue(&spec(&[], None), NOW).unwrap();
        assert!(
            matches!(t.authenticate(&token, &Down, NOW).await, Err(SaTokenError::Lookup(m)) if m.contains("etcd"))
        );
    }
}
