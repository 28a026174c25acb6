//! TLS bootstrapping end to end, kubeadm-join style, against a running apiserver-lite:
//! `apiserver-lite token create` gives a bootstrap kubeconfig; with its token a node asks for
//! a client certificate (a CSR), which the in-process controller approves and signs; the
//! node then is `system:node:NAME` and gets its serving certificate the same way. Tokens
//! that are wrong or expired are 401, the token may do nothing but CSRs, and requests of the
//! wrong form or for other signers are never signed without an admin (and then only ours).

mod common;

use std::path::{Path, PathBuf};

use apiserver_lite::auth::csr::make_request;
use apiserver_lite::auth::kubeconfig::{self, Credentials};
use base64::Engine as _;
use axum::http::StatusCode;
use common::{Kubectl, ServerProcess, TestServer, eventually};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use serde_json::{Value, json};

const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `apiserver-lite token create` as a user runs it: (token, stdout, stderr, success).
fn token_create(data: &Path, out: &Path, extra: &[&str]) -> (String, String, bool) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_apiserver-lite"))
        .args(["token", "create", "--data-dir"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run apiserver-lite token create");
    (String::from_utf8_lossy(&o.stdout).trim().to_string(), String::from_utf8_lossy(&o.stderr).into_owned(), o.status.success())
}

async fn client(kubeconfig: &Path) -> kube::Client {
    apiserver_lite::controllers::kubeconfig_client(kubeconfig).await.expect("a client from the kubeconfig")
}

fn csr_object(name: &str, request_pem: &str, signer: &str, usages: &[&str]) -> CertificateSigningRequest {
    serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        // The server replaces whatever identity the client claims.
        "spec": {"request": b64(request_pem), "signerName": signer, "usages": usages, "username": "kubernetes-admin", "groups": ["system:masters"]},
    }))
    .unwrap()
}

async fn create_csr(c: &kube::Client, name: &str, cn: &str, orgs: &[&str], sans: &[&str], signer: &str, usages: &[&str]) -> String {
    let (request, key) = make_request(cn, orgs, sans);
    let csrs: kube::Api<CertificateSigningRequest> = kube::Api::all(c.clone());
    csrs.create(&Default::default(), &csr_object(name, &request, signer, usages)).await.unwrap_or_else(|e| panic!("create csr {name}: {e}"));
    key
}

/// The certificate (PEM) once the CSR has one, within 10 s.
async fn issued(c: &kube::Client, name: &str) -> String {
    let csrs: kube::Api<CertificateSigningRequest> = kube::Api::all(c.clone());
    eventually(&format!("csr {name} to be issued"), 10, || {
        let csrs = csrs.clone();
        async move {
            let csr = csrs.get(name).await.map_err(|e| e.to_string())?;
            let status = csr.status.clone().unwrap_or_default();
            match status.certificate {
                Some(c) if !c.0.is_empty() => Ok(String::from_utf8(c.0).unwrap()),
                _ => Err(format!("{:?}", status.conditions)),
            }
        }
    })
    .await
}

/// The CSR as JSON.
async fn csr_json(c: &kube::Client, name: &str) -> Value {
    let csrs: kube::Api<CertificateSigningRequest> = kube::Api::all(c.clone());
    serde_json::to_value(csrs.get(name).await.unwrap()).unwrap()
}

fn condition_types(csr: &Value) -> Vec<String> {
    csr["status"]["conditions"].as_array().into_iter().flatten().filter_map(|c| c["type"].as_str()).map(str::to_string).collect()
}

fn api_code<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn token_kubeconfig(server: &ServerProcess, path: &Path, token: &str) -> PathBuf {
    let ca = std::fs::read_to_string(server.data.join("pki/ca.crt")).unwrap();
    kubeconfig::write(path, "apiserver-lite", &format!("https://127.0.0.1:{}", server.port), &ca, "t", Credentials::Token(token.into())).unwrap();
    path.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_bootstrap_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Before the server ever ran: a clear error naming what is missing.
    let (_, stderr, ok) = token_create(&data, &dir.path().join("x"), &[]);
    assert!(!ok && stderr.contains("admin.kubeconfig"), "{stderr}");
    let mut server = ServerProcess::start(&data, &[]);
    let admin_kubectl = Kubectl::new(&server.kubeconfig());
    let admin = client(&server.kubeconfig()).await;
    let (_, stderr, ok) = token_create(&data, &dir.path().join("x"), &["--ttl", "soon"]);
    assert!(!ok && stderr.contains("--ttl"), "{stderr}");
    let (_, stderr, ok) = token_create(&data, &dir.path().join("no/such/dir/x"), &[]);
    assert!(!ok && stderr.contains("is not a directory"), "{stderr}");

    // The token and its kubeconfig.
    let boot_path = dir.path().join("bootstrap.kubeconfig");
    let (token, stderr, ok) = token_create(&data, &boot_path, &["--ttl", "1h", "--description", "for w1"]);
    assert!(ok, "{stderr}\n{}", server.log());
    let parts = apiserver_lite::auth::bootstrap_token::parse(&token).expect("a bootstrap token on stdout");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&boot_path).unwrap().permissions().mode() & 0o777, 0o600);
    let boot_yaml = std::fs::read_to_string(&boot_path).unwrap();
    assert!(boot_yaml.contains(&token) && boot_yaml.contains("kubelet-bootstrap") && boot_yaml.contains(&format!("127.0.0.1:{}", server.port)), "{boot_yaml}");
    let secrets: kube::Api<Secret> = kube::Api::namespaced(admin.clone(), "kube-system");
    let secret = secrets.get(&format!("bootstrap-token-{}", parts.id)).await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
    assert!(secret.data.as_ref().unwrap().contains_key("expiration"));

    // The token authenticates as the bootstrapper, which may do nothing but CSRs.
    let boot_kubectl = Kubectl::new(&boot_path);
    let whoami = boot_kubectl.ok(&["auth", "whoami"]);
    assert!(whoami.contains(&format!("system:bootstrap:{}", parts.id)) && whoami.contains("system:bootstrappers"), "{whoami}");
    let boot = client(&boot_path).await;
    assert_eq!(api_code(kube::Api::<Pod>::all(boot.clone()).list(&Default::default()).await), 403);
    assert_eq!(api_code(kube::Api::<Secret>::namespaced(boot.clone(), "kube-system").list(&Default::default()).await), 403);
    assert_eq!(api_code(kube::Api::<Node>::all(boot.clone()).list(&Default::default()).await), 403);

    // Wrong secret and expired tokens are 401.
    let wrong = client(&token_kubeconfig(&server, &dir.path().join("wrong.kubeconfig"), &format!("{}.{}", parts.id, "0000000000000000"))).await;
    assert_eq!(api_code(kube::Api::<CertificateSigningRequest>::all(wrong).list(&Default::default()).await), 401);
    let expired_secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bootstrap-token-exp123", "namespace": "kube-system"}, "type": "bootstrap.kubernetes.io/token",
        "stringData": {"token-id": "exp123", "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true", "expiration": "2020-01-01T00:00:00Z"}});
    secrets.create(&Default::default(), &serde_json::from_value(expired_secret).unwrap()).await.unwrap();
    let expired = client(&token_kubeconfig(&server, &dir.path().join("expired.kubeconfig"), "exp123.0123456789abcdef")).await;
    assert_eq!(api_code(kube::Api::<CertificateSigningRequest>::all(expired).list(&Default::default()).await), 401);

    // A malformed request is refused with the field named.
    let bad = csr_object("bad", "not a certificate request", CLIENT_SIGNER, &["client auth"]);
    match kube::Api::<CertificateSigningRequest>::all(boot.clone()).create(&Default::default(), &bad).await {
        Err(kube::Error::Api(s)) => assert!(s.code == 422 && s.message.contains("spec.request"), "{s:?}"),
        other => panic!("{other:?}"),
    }

    // Requests that must never be signed automatically, made first.
    create_csr(&boot, "masters-o", "system:node:w1", &["system:masters"], &[], CLIENT_SIGNER, &["digital signature", "client auth"]).await;
    create_csr(&boot, "masters-cn", "system:masters", &["system:nodes"], &[], CLIENT_SIGNER, &["digital signature", "client auth"]).await;
    create_csr(&boot, "other-signer", "system:node:w1", &["system:nodes"], &[], "example.com/custom", &["digital signature", "client auth"]).await;
    // The node's client certificate: approved and signed within seconds.
    let key = create_csr(&boot, "node-csr-w1", "system:node:w1", &["system:nodes"], &[], CLIENT_SIGNER, &["digital signature", "key encipherment", "client auth"]).await;
    let cert = issued(&boot, "node-csr-w1").await;
    let w1 = csr_json(&boot, "node-csr-w1").await;
    assert_eq!(w1["spec"]["username"], format!("system:bootstrap:{}", parts.id));
    assert!(w1["spec"]["groups"].as_array().unwrap().iter().all(|g| g != "system:masters"), "{w1}");
    assert_eq!(condition_types(&w1), vec!["Approved"]);
    for name in ["masters-o", "masters-cn", "other-signer"] {
        let c = csr_json(&admin, name).await;
        assert!(c["status"]["certificate"].is_null() && condition_types(&c).is_empty(), "{name}: {c}");
    }

    // The certificate makes the node system:node:w1.
    let ca = std::fs::read_to_string(data.join("pki/ca.crt")).unwrap();
    let node_path = dir.path().join("kubelet.kubeconfig");
    kubeconfig::write(&node_path, "apiserver-lite", &format!("https://127.0.0.1:{}", server.port), &ca, "system:node:w1", Credentials::ClientCert { cert_pem: cert, key_pem: key }).unwrap();
    let whoami = Kubectl::new(&node_path).ok(&["auth", "whoami"]);
    assert!(whoami.contains("system:node:w1") && whoami.contains("system:nodes"), "{whoami}");
    let node = client(&node_path).await;
    let w1_node: Node = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"}})).unwrap();
    kube::Api::<Node>::all(node.clone()).create(&Default::default(), &w1_node).await.expect("the node registers itself");

    // With its own credentials the node gets a serving certificate for its IP.
    create_csr(&node, "serving-w1", "system:node:w1", &["system:nodes"], &["10.0.0.5"], SERVING_SIGNER, &["digital signature", "key encipherment", "server auth"]).await;
    let serving = issued(&node, "serving-w1").await;
    let (_, pem) = x509_parser::pem::parse_x509_pem(serving.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("a SAN").value;
    assert_eq!(format!("{:?}", san.general_names), "[IPAddress([10, 0, 0, 5])]");
    assert!(cert.extended_key_usage().unwrap().unwrap().value.server_auth);

    // An admin's approval: our signer signs what has the node form, fails what does not, and
    // other signers' requests stay unsigned; denied requests are never signed.
    create_csr(&admin, "admin-made", "system:node:w2", &["system:nodes"], &[], CLIENT_SIGNER, &["digital signature", "client auth"]).await;
    create_csr(&admin, "denied", "system:node:w3", &["system:nodes"], &[], CLIENT_SIGNER, &["digital signature", "client auth"]).await;
    assert!(csr_json(&admin, "admin-made").await["status"]["certificate"].is_null(), "an admin's own request waits for approval");
    for name in ["admin-made", "masters-o", "masters-cn", "other-signer"] {
        let out = admin_kubectl.ok(&["certificate", "approve", name]);
        assert!(out.contains("approved"), "{out}");
    }
    admin_kubectl.ok(&["certificate", "deny", "denied"]);
    issued(&admin, "admin-made").await;
    let admin_ref = &admin;
    for name in ["masters-o", "masters-cn"] {
        let c = eventually(&format!("csr {name} to fail"), 10, || async move {
            let c = csr_json(admin_ref, name).await;
            if condition_types(&c).contains(&"Failed".to_string()) { Ok(c) } else { Err(c.to_string()) }
        })
        .await;
        assert!(c["status"]["certificate"].is_null(), "{name}: {c}");
    }
    // Signed after the approvals above, so the controller has seen those by now.
    create_csr(&boot, "node-csr-w4", "system:node:w4", &["system:nodes"], &[], CLIENT_SIGNER, &["digital signature", "client auth"]).await;
    issued(&boot, "node-csr-w4").await;
    for name in ["other-signer", "denied"] {
        let c = csr_json(&admin, name).await;
        assert!(c["status"]["certificate"].is_null(), "{name}: {c}");
    }

    // kubectl get csr shows them all, with upstream's condition column.
    let table = admin_kubectl.ok(&["get", "csr"]);
    let line = |name: &str| table.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} not in:\n{table}")).to_string();
    assert!(table.starts_with("NAME") && table.contains("SIGNERNAME") && table.contains("REQUESTOR"), "{table}");
    assert!(line("node-csr-w1").contains("Approved,Issued") && line("node-csr-w1").contains(&format!("system:bootstrap:{}", parts.id)), "{table}");
    assert!(line("other-signer").contains("Approved") && !line("other-signer").contains("Issued"), "{table}");
    assert!(line("masters-o").contains("Approved,Failed"), "{table}");
    assert!(line("denied").contains("Denied"), "{table}");
    assert!(line("serving-w1").contains("kubelet-serving") && line("serving-w1").contains("system:node:w1"), "{table}");
    let short = admin_kubectl.ok(&["get", "certificatesigningrequests.certificates.k8s.io", "-o", "name"]);
    assert!(short.contains("certificatesigningrequest.certificates.k8s.io/node-csr-w1"), "{short}");
    // The bootstrapper may list them too (it watches its own request).
    assert!(boot_kubectl.ok(&["get", "csr"]).contains("node-csr-w1"));

    // With the server stopped, the command says so.
    server.stop();
    let (_, stderr, ok) = token_create(&data, &dir.path().join("late.kubeconfig"), &[]);
    assert!(!ok && stderr.contains("is apiserver-lite running?"), "{stderr}");
    assert!(!dir.path().join("late.kubeconfig").exists());
}

/// The CSR strategy over HTTP: the spec is fixed at create, `status` cannot decide and
/// `approval` can only decide.
#[tokio::test]
async fn only_the_approval_subresource_decides_and_the_spec_never_changes() {
    let s = TestServer::new().await;
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let (request, _) = make_request("system:node:w9", &["system:nodes"], &[]);
    let csr = serde_json::to_value(csr_object("c1", &request, "example.com/custom", &["client auth"])).unwrap();
    let (code, created) = s.post(path, csr).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["username"], "system:apiserver", "the requester is who asked, not who the body says");
    assert_eq!(created["status"], json!({}));

    let mut changed = created.clone();
    changed["spec"]["signerName"] = json!("kubernetes.io/kube-apiserver-client-kubelet");
    changed["status"]["conditions"] = json!([{"type": "Approved", "status": "True", "reason": "Sneaky"}]);
    let (code, updated) = s.put(&format!("{path}/c1"), changed.clone()).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!((updated["spec"]["signerName"].as_str(), &updated["status"]), (Some("example.com/custom"), &json!({})));
    let (code, updated) = s.put(&format!("{path}/c1/status"), changed.clone()).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert!(updated["status"]["conditions"].is_null(), "status may not approve: {updated}");

    let (code, approved) = s.put(&format!("{path}/c1/approval"), changed).await;
    assert_eq!(code, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(approved["spec"]["signerName"], "example.com/custom");
    let mut both = approved.clone();
    both["status"]["conditions"] = json!([{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]);
    let (code, body) = s.put(&format!("{path}/c1/approval"), both).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("mutually exclusive"), "{body}");

    let mut bad = serde_json::to_value(csr_object("c2", &request, "", &["client auth"])).unwrap();
    bad["spec"]["request"] = json!(b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"));
    let (code, body) = s.post(path, bad).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("spec.request: Invalid value: PEM block type must be CERTIFICATE REQUEST") && message.contains("spec.signerName: Required value"), "{message}");
}
