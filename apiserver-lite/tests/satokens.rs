//! Service account tokens end to end: TokenRequest in-process (issue, authenticate, revoke by
//! deleting the service account or the bound pod), then with the real kubectl over TLS
//! (`kubectl create token`, a kubeconfig holding that token, whoami and a refused list).

mod common;

use std::sync::Arc;

use apiserver_lite::auth::authn::{Authenticator, UserInfo};
use apiserver_lite::handlers::token::StoreObjects;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use common::{Kubectl, ServerProcess, TestServer};
use serde_json::{Value, json};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn authenticator(s: &TestServer) -> Authenticator {
    Authenticator::new(None).unwrap().with_service_accounts(s.api.sa_tokens.clone(), Arc::new(StoreObjects::new(&s.api)))
}

async fn who(authn: &Authenticator, token: &str) -> Option<UserInfo> {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    authn.authenticate_request(None, &headers).await
}

async fn request_token(s: &TestServer, ns: &str, sa: &str, spec: Value) -> (StatusCode, Value) {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    s.post(&format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"), body).await
}

async fn token(s: &TestServer, ns: &str, sa: &str, spec: Value) -> String {
    let (code, body) = request_token(s, ns, sa, spec).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body["status"]["token"].as_str().expect("status.token").to_string()
}

fn service_account(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
}

#[tokio::test]
async fn every_namespace_has_a_default_service_account() {
    let s = TestServer::new().await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let (code, sa) = s.get(&format!("/api/v1/namespaces/{ns}/serviceaccounts/default")).await;
        assert_eq!(code, StatusCode::OK, "{ns}: {sa}");
    }
    let (code, _) = s.post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, sa) = s.get("/api/v1/namespaces/team/serviceaccounts/default").await;
    assert_eq!(code, StatusCode::OK, "{sa}");
    assert!(sa["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    // Bootstrapping again (a restart) leaves the existing one alone.
    let (_, first) = s.get("/api/v1/namespaces/default/serviceaccounts/default").await;
    apiserver_lite::server::bootstrap(&s.api, ("127.0.0.1".parse().unwrap(), 6443)).await.unwrap();
    let (_, again) = s.get("/api/v1/namespaces/default/serviceaccounts/default").await;
    assert_eq!(again["metadata"]["uid"], first["metadata"]["uid"]);
}

#[tokio::test]
async fn a_requested_token_authenticates_as_the_service_account() {
    let s = TestServer::new().await;
    let (code, tr) = request_token(&s, "default", "default", json!({})).await;
    assert_eq!(code, StatusCode::CREATED, "{tr}");
    assert_eq!((tr["kind"].as_str(), tr["apiVersion"].as_str()), (Some("TokenRequest"), Some("authentication.k8s.io/v1")));
    assert_eq!(tr["spec"]["audiences"], json!([ISSUER]));
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    let expires = time::OffsetDateTime::parse(tr["status"]["expirationTimestamp"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::seconds(3590) && left <= time::Duration::seconds(3600), "{left}");

    let user = who(&authenticator(&s), tr["status"]["token"].as_str().unwrap()).await.expect("the token authenticates");
    assert_eq!(user, UserInfo::new("system:serviceaccount:default:default", &["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]));
    // A token for another audience is not for this server.
    let vault = token(&s, "default", "default", json!({"audiences": ["vault"]})).await;
    assert!(who(&authenticator(&s), &vault).await.is_none());
    // Tokens from another server's key are refused.
    let other = TestServer::new().await;
    let foreign = token(&other, "default", "default", json!({})).await;
    assert!(who(&authenticator(&s), &foreign).await.is_none());
}

#[tokio::test]
async fn token_requests_are_validated() {
    let s = TestServer::new().await;
    let (code, body) = request_token(&s, "default", "nobody", json!({})).await;
    assert_eq!((code, body["message"].as_str()), (StatusCode::NOT_FOUND, Some(r#"serviceaccounts "nobody" not found"#)));
    let (code, body) = request_token(&s, "default", "default", json!({"expirationSeconds": 599})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"), "{body}");
    let (code, body) = request_token(&s, "default", "default", json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "ghost"}})).await;
    assert_eq!((code, body["message"].as_str()), (StatusCode::NOT_FOUND, Some(r#"pods "ghost" not found"#)));
    let (code, _) = s.post("/api/v1/namespaces/default/pods", common::pod("web", json!({}))).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, body) = request_token(&s, "default", "default", json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "not-its-uid"}})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let (code, _) = s.post("/api/v1/namespaces/default/serviceaccounts", service_account("robot")).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, body) = request_token(&s, "default", "robot", json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("different serviceaccount name"), "{body}");
    let (code, _) = request_token(&s, "default", "default", json!({"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "web"}})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deleting_or_recreating_the_service_account_revokes_its_tokens() {
    let s = TestServer::new().await;
    let authn = authenticator(&s);
    let (code, _) = s.post("/api/v1/namespaces/default/serviceaccounts", service_account("robot")).await;
    assert_eq!(code, StatusCode::CREATED);
    let old = token(&s, "default", "robot", json!({})).await;
    assert_eq!(who(&authn, &old).await.unwrap().name, "system:serviceaccount:default:robot");

    let (code, _) = s.delete("/api/v1/namespaces/default/serviceaccounts/robot").await;
    assert_eq!(code, StatusCode::OK);
    assert!(who(&authn, &old).await.is_none(), "the service account is gone");
    let (code, _) = s.post("/api/v1/namespaces/default/serviceaccounts", service_account("robot")).await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(who(&authn, &old).await.is_none(), "same name, another uid");
    let new = token(&s, "default", "robot", json!({})).await;
    assert!(who(&authn, &new).await.is_some());
}

#[tokio::test]
async fn a_token_bound_to_a_pod_dies_with_the_pod() {
    let s = TestServer::new().await;
    let authn = authenticator(&s);
    let (code, pod) = s.post("/api/v1/namespaces/default/pods", common::pod("web", json!({}))).await;
    assert_eq!(code, StatusCode::CREATED);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let (code, tr) = request_token(&s, "default", "default", json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": uid}})).await;
    assert_eq!(code, StatusCode::CREATED, "{tr}");
    assert_eq!(tr["spec"]["boundObjectRef"]["name"], "web");
    let bound = tr["status"]["token"].as_str().unwrap();
    let unbound = token(&s, "default", "default", json!({})).await;
    assert!(who(&authn, bound).await.is_some());

    let (code, body) = s.delete("/api/v1/namespaces/default/pods/web?gracePeriodSeconds=0").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(s.get("/api/v1/namespaces/default/pods/web").await.0, StatusCode::NOT_FOUND);
    assert!(who(&authn, bound).await.is_none(), "the bound pod is gone");
    // A pod of the same name is another pod.
    assert_eq!(s.post("/api/v1/namespaces/default/pods", common::pod("web", json!({}))).await.0, StatusCode::CREATED);
    assert!(who(&authn, bound).await.is_none(), "the pod was recreated");
    assert!(who(&authn, &unbound).await.is_some(), "tokens not bound to the pod live on");
}

/// A kubeconfig for `server` that presents `token` (and no client certificate).
fn token_kubeconfig(server: &ServerProcess, dir: &std::path::Path, name: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.kubeconfig"));
    let ca = std::fs::read_to_string(server.data.join("pki/ca.crt")).unwrap();
    let url = format!("https://127.0.0.1:{}", server.port);
    apiserver_lite::auth::kubeconfig::write(&path, "apiserver-lite", &url, &ca, "default-sa", apiserver_lite::auth::Credentials::Token(token.to_string())).unwrap();
    path
}

#[test]
fn kubectl_create_token_and_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut server = ServerProcess::start(&data, &[]);
    let admin = Kubectl::new(&server.kubeconfig());

    let token = admin.ok(&["create", "token", "default"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let sa = Kubectl::new(&token_kubeconfig(&server, dir.path(), "sa", &token));

    let whoami = sa.ok(&["auth", "whoami"]);
    assert!(whoami.contains("system:serviceaccount:default:default"), "{whoami}");
    assert!(whoami.contains("system:serviceaccounts:default"), "{whoami}");
    let version = sa.ok(&["get", "--raw", "/version"]);
    assert!(version.contains("\"minor\": \"33\"") || version.contains("\"minor\":\"33\""), "{version}");

    let denied = sa.run(&["get", "secrets"]);
    assert!(!denied.ok, "{}", denied.stdout);
    assert!(
        denied.stderr.contains(r#"Error from server (Forbidden): secrets is forbidden: User "system:serviceaccount:default:default" cannot list resource "secrets" in API group "" in the namespace "default""#),
        "{}",
        denied.stderr
    );

    // The signing key outlives a restart, and so do its tokens.
    server.stop();
    server.spawn();
    let whoami = Kubectl::new(&sa.kubeconfig).ok(&["auth", "whoami"]);
    assert!(whoami.contains("system:serviceaccount:default:default"), "after a restart: {whoami}");
    assert!(server.data.join("pki/sa.key").exists() && server.data.join("pki/sa.pub").exists());

    // A token for another audience, or a mangled one, gets 401.
    let vault = admin.ok(&["create", "token", "default", "--audience", "vault"]).trim().to_string();
    let refused = Kubectl::new(&token_kubeconfig(&server, dir.path(), "vault", &vault)).run(&["get", "--raw", "/api"]);
    assert!(!refused.ok && refused.stderr.contains("Unauthorized"), "{}", refused.stderr);
    // Bound to a pod (kubectl sends the boundObjectRef in protobuf): valid until the pod goes.
    admin.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n");
    let bound = admin.ok(&["create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "web"]).trim().to_string();
    let pod_sa = Kubectl::new(&token_kubeconfig(&server, dir.path(), "bound", &bound));
    assert!(pod_sa.ok(&["auth", "whoami"]).contains("system:serviceaccount:default:default"));
    admin.ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    let refused = pod_sa.run(&["auth", "whoami"]);
    assert!(!refused.ok && refused.stderr.contains("Unauthorized"), "{}", refused.stderr);
    let short = admin.run(&["create", "token", "default", "--duration", "5m"]);
    assert!(!short.ok && short.stderr.contains("may not specify a duration less than 10 minutes"), "{}", short.stderr);
}
