//! apiserver-lite on etcd, as a user who outgrows one machine runs it: two API servers on one
//! etcd (sharing the cluster's certificates) serve the same objects, and a watch on one sees
//! writes made through the other.

mod common;

use common::etcd::EtcdProcess;
use common::{Kubectl, ServerProcess};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_api_servers_on_one_etcd_serve_the_same_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    // Wait for etcd to answer before the servers connect.
    drop(etcd.connect("/probe").await);
    let args = ["--storage", "etcd", "--etcd-servers", etcd.endpoint.as_str()];
    let a = ServerProcess::start(&dir.path().join("a"), &args);
    // B gets A's certificates, so one kubeconfig's CA trusts both.
    copy_dir(&dir.path().join("a/pki"), &dir.path().join("b/pki"));
    let b = ServerProcess::start(&dir.path().join("b"), &args);
    let (ka, kb) = (Kubectl::new(&a.kubeconfig()), Kubectl::new(&b.kubeconfig()));

    let (seen, errors) = kb.watch_during("configmaps", || {
        ka.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  a: \"1\"\n");
        assert_eq!(kb.ok(&["get", "configmap", "shared", "-o", "jsonpath={.data.a}"]), "1");
    });
    assert!(seen.lines().any(|l| l.contains("ADDED") && l.contains("shared")), "B's watch: {seen}\n{errors}");

    // Both bootstrapped the same system objects once; a restart of A on etcd keeps everything.
    let mut a = a;
    a.kill();
    a.spawn();
    assert_eq!(ka.ok(&["get", "configmap", "shared", "-o", "jsonpath={.data.a}"]), "1");
    let svcs = ka.ok(&["get", "services", "-A", "-o", "name"]);
    assert_eq!(svcs.lines().filter(|l| *l == "service/kubernetes").count(), 1, "{svcs}");
}
