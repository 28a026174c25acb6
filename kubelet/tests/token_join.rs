//! TLS bootstrapping against apiserver-lite: a bootstrap token from `token create`, the
//! node's client and serving CSRs approved and signed by the server's CSR controller, the
//! node's kubeconfig working, and a restart requesting nothing. No root: no kubelet runs,
//! only its bootstrapping (`agent::node::tls_bootstrap::join`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kubelet_rs::agent::node::tls_bootstrap::{KubeConnector, certs, join};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_server(dir: &Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listen = SocketAddr::new("127.0.0.1".parse().unwrap(), free_port());
    let config = apiserver_lite::server::Config {
        data_dir: dir.to_path_buf(),
        listen,
        advertise_address: Some(listen.ip()),
        tls_sans: vec!["127.0.0.1".into()],
        storage: apiserver_lite::server::StorageBackend::Sqlite,
        token_auth_file: None,
        service_cidr: apiserver_lite::server::parse_cidr("10.96.0.0/12").unwrap(),
        controllers: true,
        scheduler: false,
        components: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        apiserver_lite::server::run(config, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap()
    });
    (format!("https://{listen}"), stop)
}

async fn csrs(admin: &Path) -> Vec<CertificateSigningRequest> {
    let client = apiserver_lite::controllers::kubeconfig_client(admin).await.unwrap();
    kube::Api::<CertificateSigningRequest>::all(client).list(&Default::default()).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_bootstrap_token_and_keeps_its_identity_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("apiserver");
    let (server, _stop) = start_server(&server_dir).await;
    let bootstrap = dir.path().join("bootstrap.kubeconfig");
    let options = apiserver_lite::server::JoinTokenOptions {
        data_dir: server_dir.clone(),
        server: Some(server.clone()),
        out: bootstrap.clone(),
        ttl: Duration::from_secs(3600),
        description: None,
    };
    // The server writes its admin kubeconfig just before it serves.
    let start = std::time::Instant::now();
    loop {
        match apiserver_lite::server::create_join_token(&options).await {
            Ok(_) => break,
            Err(e) if start.elapsed() < Duration::from_secs(60) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("token create: {e}"),
        }
    }

    let data = dir.path().join("node");
    let plan = join::plan(&join::JoinFlags { bootstrap_kubeconfig: Some(bootstrap.clone()), ..Default::default() }, &data).unwrap();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    tokio::time::timeout(Duration::from_secs(60), plan.carry_out(&KubeConnector, "w1", ip)).await.expect("certificates within 60 s").unwrap();

    // The node's own credentials work, as system:node:w1.
    let client = apiserver_lite::controllers::kubeconfig_client(&plan.kubeconfig).await.unwrap();
    let info = client.apiserver_version().await.unwrap();
    assert!(!info.git_version.is_empty());
    let admin = server_dir.join("admin.kubeconfig");
    let issued = csrs(&admin).await;
    assert_eq!(issued.len(), 2, "{issued:?}");
    for csr in &issued {
        assert!(csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some(), "{csr:?}");
    }
    let serving = issued.iter().find(|c| c.spec.signer_name == "kubernetes.io/kubelet-serving").expect("a serving CSR");
    assert_eq!(serving.spec.username.as_deref(), Some("system:node:w1"), "the serving CSR is made with the node's new credentials");

    // The kubelet API's files: a pair that serves, naming the node IP; the client CA is the cluster CA.
    let cert = std::fs::read(&plan.serving.cert).unwrap();
    let key = std::fs::read(&plan.serving.key).unwrap();
    let ca = std::fs::read(&plan.serving.client_ca).unwrap();
    assert_eq!(ca, std::fs::read(server_dir.join("pki").join("ca.crt")).unwrap());
    assert!(certs::cert_facts(&cert).unwrap().ips.contains(&ip));
    kubelet_rs::agent::server::tls::server_config(&cert, &key, &ca).unwrap();

    // A restart: the same identity, nothing requested.
    let before = std::fs::read(&plan.kubeconfig).unwrap();
    plan.carry_out(&KubeConnector, "w1", ip).await.unwrap();
    assert_eq!(std::fs::read(&plan.kubeconfig).unwrap(), before);
    assert_eq!(csrs(&admin).await.len(), 2);
}
