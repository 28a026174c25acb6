//! The bootstrapping flow against a fake CSR API that signs with a test CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, ParsedExtension};

use super::*;

/// How the fake answers the CSRs created.
#[derive(Clone, Copy)]
enum Answer {
    /// Issue the certificate at this read of the CSR (1: the first read after creating).
    IssueAtRead(usize),
    /// Add this condition at the first read.
    Condition(&'static str),
    /// Issue a certificate valid only until 2001.
    IssueExpired,
}

struct State {
    answer: Answer,
    /// (the kubeconfig the client was made from, the CSR as created)
    created: Vec<(PathBuf, CertificateSigningRequest)>,
    reads: usize,
    connects: Vec<PathBuf>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    ca: Arc<(rcgen::CertificateParams, rcgen::KeyPair, String)>,
}

impl Fake {
    fn new(answer: Answer) -> Fake {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "test-ca");
        let pem = params.self_signed(&key).unwrap().pem();
        Fake { state: Arc::new(Mutex::new(State { answer, created: Vec::new(), reads: 0, connects: Vec::new() })), ca: Arc::new((params, key, pem)) }
    }

    fn ca_pem(&self) -> String {
        self.ca.2.clone()
    }

    fn created(&self) -> Vec<(PathBuf, CertificateSigningRequest)> {
        self.state.lock().unwrap().created.clone()
    }

    /// A certificate for the request's public key and subject, signed by the test CA.
    fn sign(&self, request_pem: &[u8], expired: bool) -> String {
        let (_, block) = x509_parser::pem::parse_x509_pem(request_pem).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(&block.contents).unwrap();
        let public = RawKey(csr.certification_request_info.subject_pki.subject_public_key.data.to_vec());
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        x509_parser::prelude::GeneralName::DNSName(d) => params.subject_alt_names.push(rcgen::SanType::DnsName(d.to_string().try_into().unwrap())),
                        x509_parser::prelude::GeneralName::IPAddress(b) if b.len() == 4 => params.subject_alt_names.push(rcgen::SanType::IpAddress(<[u8; 4]>::try_from(*b).unwrap().into())),
                        _ => {}
                    }
                }
            }
        }
        params.distinguished_name.push(rcgen::DnType::CommonName, "from-fake");
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = if expired { rcgen::date_time_ymd(2001, 1, 1) } else { rcgen::date_time_ymd(2100, 1, 1) };
        let issuer = rcgen::Issuer::from_params(&self.ca.0, &self.ca.1);
        params.signed_by(&public, &issuer).unwrap().pem()
    }
}

struct RawKey(Vec<u8>);

impl rcgen::PublicKeyData for RawKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

struct FakeApi {
    fake: Fake,
    kubeconfig: PathBuf,
}

#[async_trait::async_trait]
impl CsrConnector for Fake {
    async fn connect(&self, kubeconfig: &Path) -> Result<Box<dyn CsrApi>, CsrCallError> {
        self.state.lock().unwrap().connects.push(kubeconfig.to_path_buf());
        Ok(Box::new(FakeApi { fake: self.clone(), kubeconfig: kubeconfig.to_path_buf() }))
    }
}

#[async_trait::async_trait]
impl CsrApi for FakeApi {
    async fn create(&self, csr: &CertificateSigningRequest) -> Result<CertificateSigningRequest, CsrCallError> {
        let mut state = self.fake.state.lock().unwrap();
        state.created.push((self.kubeconfig.clone(), csr.clone()));
        let mut created = csr.clone();
        created.metadata.name = Some(format!("node-csr-{}", state.created.len()));
        Ok(created)
    }

    async fn get(&self, name: &str) -> Result<CertificateSigningRequest, CsrCallError> {
        let (mut csr, answer, reads) = {
            let mut state = self.fake.state.lock().unwrap();
            state.reads += 1;
            let (_, csr) = state.created.last().cloned().ok_or_else(|| CsrCallError("none".into()))?;
            (csr, state.answer, state.reads)
        };
        csr.metadata.name = Some(name.to_string());
        let status = match answer {
            Answer::IssueAtRead(n) if reads >= n => CertificateSigningRequestStatus { certificate: Some(ByteString(self.fake.sign(&csr.spec.request.0, false).into_bytes())), conditions: None },
            Answer::IssueExpired => CertificateSigningRequestStatus { certificate: Some(ByteString(self.fake.sign(&csr.spec.request.0, true).into_bytes())), conditions: None },
            Answer::Condition(kind) => CertificateSigningRequestStatus {
                certificate: None,
                conditions: Some(vec![CertificateSigningRequestCondition {
                    type_: kind.into(),
                    status: "True".into(),
                    reason: Some("PolicyNo".into()),
                    message: Some("not a node of ours".into()),
                    ..Default::default()
                }]),
            },
            _ => CertificateSigningRequestStatus::default(),
        };
        csr.status = Some(status);
        Ok(csr)
    }
}

/// A bootstrap kubeconfig (a token) for the fake's CA, and where the node kubeconfig goes.
fn setup(fake: &Fake) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.kubeconfig");
    apiserver_lite::auth::kubeconfig::write(&bootstrap, "lab", "https://10.0.0.1:6443", &fake.ca_pem(), "kubelet-bootstrap", apiserver_lite::auth::Credentials::Token("abcdef.0123456789abcdef".into())).unwrap();
    let kubeconfig = dir.path().join("kubelet.kubeconfig");
    (dir, bootstrap, kubeconfig)
}

fn parse_request(csr: &CertificateSigningRequest) -> (String, Vec<String>) {
    parse_request_pem(&csr.spec.request.0)
}

/// A request's subject and subject alternative names (as x509-parser prints them).
pub(super) fn parse_request_pem(pem: &[u8]) -> (String, Vec<String>) {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    assert_eq!(block.label, "CERTIFICATE REQUEST");
    let (_, req) = X509CertificationRequest::from_der(&block.contents).unwrap();
    let sans = req
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|e| match e {
            ParsedExtension::SubjectAlternativeName(san) => Some(san.general_names.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    (req.certification_request_info.subject.to_string(), sans)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(start_paused = true)]
async fn without_a_kubeconfig_the_node_requests_a_client_certificate_and_writes_its_kubeconfig() {
    let fake = Fake::new(Answer::IssueAtRead(1));
    let (_dir, bootstrap, kubeconfig) = setup(&fake);
    let outcome = ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap();
    assert!(matches!(outcome, ClientOutcome::Bootstrapped { ref reason } if reason.contains("does not exist")), "{outcome:?}");

    let created = fake.created();
    assert_eq!(created.len(), 1);
    let (with, csr) = &created[0];
    assert_eq!(with, &bootstrap, "the CSR is created with the bootstrap credentials");
    assert_eq!(csr.metadata.generate_name.as_deref(), Some("node-csr-"));
    assert_eq!(csr.spec.signer_name, "kubernetes.io/kube-apiserver-client-kubelet");
    assert_eq!(csr.spec.usages.as_deref().unwrap(), ["digital signature", "client auth"]);
    let (subject, sans) = parse_request(csr);
    assert_eq!(subject, "CN=system:node:worker-1, O=system:nodes");
    assert!(sans.is_empty(), "{sans:?}");
    // On the wire the request is base64 of the PEM, as the API's byte fields are.
    let wire = serde_json::to_value(csr).unwrap();
    let b64 = wire["spec"]["request"].as_str().unwrap();
    use base64::Engine;
    assert!(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap().starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

    assert_eq!(mode(&kubeconfig), 0o600);
    let access = kubeconfig::cluster_access(&kubeconfig).unwrap();
    assert_eq!((access.server.as_str(), access.ca_pem.as_str()), ("https://10.0.0.1:6443", fake.ca_pem().as_str()));
    let config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap();
    let user = &config["users"][0];
    assert_eq!(user["name"].as_str(), Some("system:node:worker-1"));
    let decode = |v: &serde_yaml::Value| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap();
    let cert = decode(&user["user"]["client-certificate-data"]);
    let key = decode(&user["user"]["client-key-data"]);
    assert!(certs::cert_facts(cert.as_bytes()).unwrap().matches_key(&key), "the kubeconfig holds the key of its certificate");
    assert!(user["user"].get("token").is_none());
    assert_eq!(std::fs::read_dir(kubeconfig.parent().unwrap()).unwrap().count(), 2, "no temp files left");
}

#[tokio::test(start_paused = true)]
async fn a_usable_kubeconfig_is_kept_and_the_bootstrap_file_is_not_even_read() {
    let fake = Fake::new(Answer::IssueAtRead(1));
    let (_dir, bootstrap, kubeconfig) = setup(&fake);
    ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap();
    let before = std::fs::read(&kubeconfig).unwrap();
    std::fs::remove_file(&bootstrap).unwrap();
    assert_eq!(ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap(), ClientOutcome::Kept);
    assert_eq!(std::fs::read(&kubeconfig).unwrap(), before, "a restart keeps the node's identity");
    assert_eq!(fake.created().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_or_unreadable_kubeconfig_is_bootstrapped_again() {
    let fake = Fake::new(Answer::IssueExpired);
    let (_dir, bootstrap, kubeconfig) = setup(&fake);
    // The fake issuing an expired certificate is refused, and nothing is written.
    let err = ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap_err();
    assert!(err.to_string().contains("node-csr-1") && err.to_string().contains("expired"), "{err}");
    assert!(!kubeconfig.exists());
    // An expired kubeconfig (written as if from an earlier bootstrap).
    let old_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let old = params.self_signed(&old_key).unwrap().pem();
    let access = kubeconfig::cluster_access(&bootstrap).unwrap();
    kubeconfig::write_node_kubeconfig(&kubeconfig, &access, "worker-1", &old, &old_key.serialize_pem()).unwrap();
    fake.state.lock().unwrap().answer = Answer::IssueAtRead(1);
    let outcome = ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap();
    assert!(matches!(outcome, ClientOutcome::Bootstrapped { ref reason } if reason.contains("expired")), "{outcome:?}");
    assert_eq!(kubeconfig::credentials(&kubeconfig, certs::now()), kubeconfig::Credentials::Valid);
    // Garbage in place of the kubeconfig.
    std::fs::write(&kubeconfig, "not: [yaml").unwrap();
    assert!(matches!(ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap(), ClientOutcome::Bootstrapped { .. }));
    assert_eq!(fake.created().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_denied_or_failed_csr_is_an_error_naming_it_and_the_reason() {
    for kind in ["Denied", "Failed"] {
        let fake = Fake::new(Answer::Condition(kind));
        let (_dir, bootstrap, kubeconfig) = setup(&fake);
        let err = ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BootstrapError::Refused { .. }), "{err:?}");
        for part in ["node-csr-1", kind, "PolicyNo", "not a node of ours"] {
            assert!(text.contains(part), "{part} not in {text}");
        }
        assert!(!kubeconfig.exists());
    }
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_pending_csr_is_read_every_second_until_approved_and_the_wait_is_told_every_30_s() {
    let fake = Fake::new(Answer::IssueAtRead(75));
    let (_dir, bootstrap, kubeconfig) = setup(&fake);
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let start = tokio::time::Instant::now();
    ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches("waiting for CSR node-csr-1 to be approved (kubectl certificate approve node-csr-1)").count(), 2, "{text}");
    assert_eq!(text.matches("created CSR node-csr-1").count(), 1, "{text}");
    let waited = start.elapsed().as_secs();
    assert!((75..=76).contains(&waited), "waited {waited} s");
    assert_eq!(fake.state.lock().unwrap().reads, 75);
    assert!(kubeconfig.exists());
}

#[tokio::test(start_paused = true)]
async fn the_serving_certificate_is_requested_with_the_node_credentials_and_kept_while_valid() {
    let fake = Fake::new(Answer::IssueAtRead(1));
    let (dir, bootstrap, kubeconfig) = setup(&fake);
    ensure_client_kubeconfig(&fake, "worker-1", &kubeconfig, &bootstrap).await.unwrap();
    let files = ServingFiles::under(&dir.path().join("pki"));
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    assert!(ensure_serving_cert(&fake, "worker-1", ip, &kubeconfig, &files).await.unwrap());
    assert!(!files.client_ca.exists(), "a given --client-ca-file is not overwritten");
    write_cluster_ca(&kubeconfig, &files.client_ca).unwrap();

    let created = fake.created();
    let (with, csr) = &created[1];
    assert_eq!(with, &kubeconfig, "the serving CSR is made with the node's new credentials");
    assert_eq!(csr.spec.signer_name, "kubernetes.io/kubelet-serving");
    assert_eq!(csr.spec.usages.as_deref().unwrap(), ["digital signature", "server auth"]);
    let (subject, sans) = parse_request(csr);
    assert_eq!(subject, "CN=system:node:worker-1, O=system:nodes");
    assert_eq!(sans, ["DNSName(worker-1)", "IPAddress(0a:00:00:07)"]);
    assert_eq!(std::fs::read_to_string(&files.client_ca).unwrap(), fake.ca_pem());
    assert_eq!(mode(&files.key), 0o600);
    let key = std::fs::read_to_string(&files.key).unwrap();
    assert!(certs::cert_facts(&std::fs::read(&files.cert).unwrap()).unwrap().matches_key(&key));
    // The kubelet API serves with them.
    crate::agent::server::tls::server_config(&std::fs::read(&files.cert).unwrap(), key.as_bytes(), &std::fs::read(&files.client_ca).unwrap()).unwrap();

    // A restart keeps them.
    assert!(!ensure_serving_cert(&fake, "worker-1", ip, &kubeconfig, &files).await.unwrap());
    assert_eq!(fake.created().len(), 2);
    // A new node IP, a key that is not the certificate's: requested again.
    assert!(ensure_serving_cert(&fake, "worker-1", "10.0.0.8".parse().unwrap(), &kubeconfig, &files).await.unwrap());
    std::fs::write(&files.key, rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem()).unwrap();
    assert!(ensure_serving_cert(&fake, "worker-1", "10.0.0.8".parse().unwrap(), &kubeconfig, &files).await.unwrap());
    assert_eq!(fake.created().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_expired_serving_certificate_is_replaced() {
    let fake = Fake::new(Answer::IssueAtRead(1));
    let (dir, bootstrap, kubeconfig) = setup(&fake);
    ensure_client_kubeconfig(&fake, "n", &kubeconfig, &bootstrap).await.unwrap();
    let files = ServingFiles::under(&dir.path().join("pki"));
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    std::fs::create_dir_all(dir.path().join("pki")).unwrap();
    std::fs::write(&files.cert, params.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    assert!(ensure_serving_cert(&fake, "n", ip, &kubeconfig, &files).await.unwrap());
}

#[test]
fn node_names_must_fit_a_certificate() {
    for ok in ["worker-1", "a.b.c", "n0"] {
        validate_node_name(ok).unwrap();
    }
    for bad in ["", "Worker", "a_b", "-a", "a..b", "a b"] {
        assert!(validate_node_name(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn a_bootstrap_kubeconfig_without_a_ca_is_refused_before_any_request() {
    let fake = Fake::new(Answer::IssueAtRead(1));
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.kubeconfig");
    std::fs::write(
        &bootstrap,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://h:6443\n\
         users:\n- name: b\n  user:\n    token: abcdef.0123456789abcdef\ncontexts:\n- name: b@k\n  context:\n    cluster: k\n    user: b\ncurrent-context: b@k\n",
    )
    .unwrap();
    let err = ensure_client_kubeconfig(&fake, "n", &dir.path().join("k"), &bootstrap).await.unwrap_err().to_string();
    assert!(err.contains("certificate-authority") && err.contains("bootstrap.kubeconfig"), "{err}");
    assert!(fake.created().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_join_with_only_a_bootstrap_kubeconfig_gets_everything_once() {
    let fake = Fake::new(Answer::IssueAtRead(2));
    let (dir, bootstrap, _) = setup(&fake);
    let data = dir.path().join("data");
    let plan = join::plan(&join::JoinFlags { bootstrap_kubeconfig: Some(bootstrap.clone()), ..Default::default() }, &data).unwrap();
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    plan.carry_out(&fake, "worker-1", ip).await.unwrap();
    for file in ["kubelet.kubeconfig", "pki/kubelet.crt", "pki/kubelet.key", "pki/ca.crt"] {
        assert!(data.join(file).exists(), "{file}");
    }
    assert_eq!(std::fs::read_to_string(data.join("pki/ca.crt")).unwrap(), fake.ca_pem());
    let connects = fake.state.lock().unwrap().connects.clone();
    assert_eq!(connects, [bootstrap.clone(), data.join("kubelet.kubeconfig")]);
    // A restart: nothing requested again.
    plan.carry_out(&fake, "worker-1", ip).await.unwrap();
    assert_eq!(fake.created().len(), 2);
}

/// The `kube` implementation on the wire: a plain-HTTP server answering the CSR API as the
/// fake does (POST the collection, GET by name), with the bootstrap token checked.
#[tokio::test]
async fn the_kube_client_creates_and_reads_csrs_as_the_api_wants() {
    use axum::extract::{Path as UrlPath, State as AxState};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    type Shared = (Fake, Arc<Mutex<Vec<serde_json::Value>>>);
    async fn create(AxState((fake, bodies)): AxState<Shared>, headers: HeaderMap, body: String) -> (StatusCode, String) {
        assert_eq!(headers.get("authorization").unwrap(), "Bearer abcdef.0123456789abcdef");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        bodies.lock().unwrap().push(value);
        let csr: CertificateSigningRequest = serde_json::from_str(&body).unwrap();
        let api = fake.connect(Path::new("wire")).await.unwrap();
        (StatusCode::CREATED, serde_json::to_string(&api.create(&csr).await.unwrap()).unwrap())
    }
    async fn read(AxState((fake, _)): AxState<Shared>, UrlPath(name): UrlPath<String>) -> String {
        let api = fake.connect(Path::new("wire")).await.unwrap();
        serde_json::to_string(&api.get(&name).await.unwrap()).unwrap()
    }
    let fake = Fake::new(Answer::IssueAtRead(2));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/apis/certificates.k8s.io/v1/certificatesigningrequests", post(create))
        .route("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}", get(read))
        .with_state((fake.clone(), bodies.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.kubeconfig");
    let server = format!("http://127.0.0.1:{port}");
    apiserver_lite::auth::kubeconfig::write(&bootstrap, "lab", &server, &fake.ca_pem(), "kubelet-bootstrap", apiserver_lite::auth::Credentials::Token("abcdef.0123456789abcdef".into())).unwrap();
    let kubeconfig = dir.path().join("kubelet.kubeconfig");
    ensure_client_kubeconfig(&KubeConnector, "worker-1", &kubeconfig, &bootstrap).await.unwrap();

    let sent = bodies.lock().unwrap()[0].clone();
    assert_eq!(sent["apiVersion"], "certificates.k8s.io/v1");
    assert_eq!(sent["kind"], "CertificateSigningRequest");
    assert_eq!(sent["metadata"]["generateName"], "node-csr-");
    assert_eq!(sent["spec"]["signerName"], "kubernetes.io/kube-apiserver-client-kubelet");
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD.decode(sent["spec"]["request"].as_str().unwrap()).unwrap();
    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----"));
    assert_eq!(kubeconfig::cluster_access(&kubeconfig).unwrap().server, server);
    assert_eq!(kubeconfig::credentials(&kubeconfig, certs::now()), kubeconfig::Credentials::Valid);
}
